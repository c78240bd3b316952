"""Where the model calls run: in this process (``local``) or on Ray workers (``ray``).

Only the model calls move: embedding texts and writing questions are the slow, parallel part.
Reading the data, the embedding store and the generation journal stay with the driver (this
process), which writes every result as it arrives, so a run on Ray resumes exactly like a local
one. ``ray`` is an optional dependency, imported only here and only when the Ray backend is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from queryfit.errors import BackendError

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install 'queryfit[ray]'"
#: Option names that carry a secret: they never travel to the workers, which read their own
#: environment ($OPENAI_API_KEY, $QUERYFIT_LLM_API_KEY, $COHERE_API_KEY...) instead.
SECRET_OPTIONS = ("api_key",)


@dataclass(frozen=True)
class RayBackend:
    """How to reach Ray and how big a worker pool to run.

    ``address``: ``None`` joins the cluster named by ``$RAY_ADDRESS`` or else starts a local Ray
    instance for the run (and stops it after); ``"auto"`` joins the cluster this machine is part
    of; ``"ray://head:10001"`` connects through Ray Client. When Ray is already initialised in
    this process (``ray.init(...)`` called by you), that session is used as is.
    ``workers``: actors in the pool, each loading the model once [default: the cluster's CPUs
    (or GPUs) divided by what one worker asks for, at most one per batch of work].
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise BackendError(f"--ray-workers must be at least 1, not {self.workers}")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise BackendError(
                "a Ray worker needs cpus_per_worker > 0 and gpus_per_worker >= 0, not "
                f"{self.cpus_per_worker} and {self.gpus_per_worker}"
            )


def resolve_backend(
    backend: str | RayBackend | None, *, address: str | None = None, workers: int | None = None
) -> RayBackend | None:
    """``None`` for the local backend, else the Ray settings (``address``/``workers`` apply to
    ``"ray"`` given by name)."""
    if isinstance(backend, RayBackend):
        return backend
    name = (backend or "local").strip().lower()
    if name not in BACKENDS:
        raise BackendError(f"--backend must be local or ray, not {backend!r}")
    if name == "local":
        if address is not None or workers is not None:
            raise BackendError("--ray-address and --ray-workers need --backend ray")
        return None
    return RayBackend(address=address, workers=workers)


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipelines are Ray Data datasets)
    except ImportError as exc:
        raise BackendError(
            f"--backend ray needs Ray with Ray Data ({exc.name or exc}); install it with "
            f"`{RAY_INSTALL}`"
        ) from exc
    return ray


def refuse_secrets(options: Mapping[str, Any], flag_hint: str) -> None:
    """Keys are never shipped to workers (task payloads are visible to the whole cluster)."""
    for name in SECRET_OPTIONS:
        if options.get(name) is not None:
            raise BackendError(
                f"an API key is not sent to Ray workers: leave out {flag_hint} and set the key "
                "in the workers' environment instead (the variable the provider reads, e.g. "
                "$OPENAI_API_KEY; a local Ray instance inherits this shell's environment)"
            )


@contextmanager
def ray_session(backend: RayBackend) -> Iterator[Any]:
    """Ray connected for the duration; a local instance started here is stopped afterwards.

    Ray Data's own progress bars and INFO logs are turned off meanwhile: the driver draws one
    progress bar as results arrive, and ``--json`` keeps stdout to one object.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=backend.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = backend.address or "a new local instance"
            why = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise BackendError(
                f"cannot start or reach Ray at {where} ({why or type(exc).__name__}); check "
                "--ray-address (auto, or ray://HEAD:10001) and that the cluster is up"
            ) from exc
        started = True
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    data_logger = logging.getLogger("ray.data")
    progress_logger = logging.getLogger("ray.data._internal.progress")
    level = data_logger.level
    context.enable_progress_bars = False
    data_logger.setLevel(logging.WARNING)
    progress_logger.addFilter(_no_bars_notice)
    try:
        yield ray
    finally:
        context.enable_progress_bars = bars
        data_logger.setLevel(level)
        progress_logger.removeFilter(_no_bars_notice)
        if started:
            ray.shutdown()


def _no_bars_notice(record: logging.LogRecord) -> bool:
    """Drop Ray Data's notice that its bars are off: they are, on purpose (see above)."""
    return not record.getMessage().startswith("Progress bars disabled")


def pool_size(ray: Any, backend: RayBackend, batches: int) -> int:
    """Workers to start: as asked, else what the cluster's CPUs (and GPUs) fit; never more
    than there are batches of work."""
    if backend.workers is not None:
        wanted = backend.workers
    else:
        resources = ray.cluster_resources()
        wanted = int(resources.get("CPU", 1) // backend.cpus_per_worker)
        if backend.gpus_per_worker > 0:
            wanted = min(wanted, int(resources.get("GPU", 0) // backend.gpus_per_worker))
        if wanted < 1:
            raise BackendError(
                f"the Ray cluster has room for no worker of {backend.cpus_per_worker:g} CPU and "
                f"{backend.gpus_per_worker:g} GPU; add nodes or ask for less per worker"
            )
    return max(1, min(wanted, batches))


def ray_failed(exc: Exception, what: str) -> BackendError:
    """A Ray failure (a worker or node lost, an object gone) as one line; work done is kept."""
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return BackendError(
        f"{what} on Ray failed ({type(exc).__name__}: {first.strip()[:300]}); what finished is "
        "kept, rerun to resume (the workers' logs have the details)"
    )


def remote_options(backend: RayBackend) -> dict[str, Any]:
    """Resources each worker asks Ray for."""
    out: dict[str, Any] = {"num_cpus": backend.cpus_per_worker}
    if backend.gpus_per_worker > 0:
        out["num_gpus"] = backend.gpus_per_worker
    return out


def pool_batches(
    ray: Any,
    backend: RayBackend,
    items: list[dict[str, Any]],
    worker: type,
    worker_kwargs: Mapping[str, Any],
    *,
    batch_size: int,
    blocks: int,
    workers: int,
    what: str,
) -> Iterator[dict[str, Any]]:
    """``items`` through an actor pool of ``workers`` ``worker`` actors (each built once with
    ``worker_kwargs``), as numpy batches in the order they finish; a lost worker or node is one
    :class:`BackendError` naming ``what`` was running."""
    from ray.data import ActorPoolStrategy

    dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        worker,
        fn_constructor_kwargs=dict(worker_kwargs),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=workers),
        **remote_options(backend),
    )
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    try:
        while True:
            try:
                yield next(batches)
            except StopIteration:
                return
            except ray.exceptions.RayError as exc:
                raise ray_failed(exc, what) from exc
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
