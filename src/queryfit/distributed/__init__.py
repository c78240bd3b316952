"""Running the model calls beyond this process: the Ray backend of ``embed`` and ``generate``.

``backend.py`` holds the settings and the connection (no Ray import until used), ``embed.py`` the
embedding actor pool behind the store; the question-writing pool behind the generation journal is
``queryfit.generation.ray_pool`` (it needs the generators). The driver (this process) always
keeps the store and the journal.
"""

from queryfit.distributed.backend import RayBackend, resolve_backend

__all__ = ["RayBackend", "resolve_backend"]
