"""The ``queryfit`` command: a thin shell over :mod:`queryfit.api`.

Importing this package registers every verb on :data:`app`, in the order ``--help`` lists them:
the data flow's order.
"""

# isort: off
from queryfit.cli import generate  # noqa: F401  generate, run
from queryfit.cli import train  # noqa: F401  embed, train, evaluate, report
from queryfit.cli import search  # noqa: F401  search (an index, with and without the adapter)
from queryfit.cli import adapters  # noqa: F401  export, import-llamaindex
from queryfit.cli import serve  # noqa: F401
from queryfit.cli import demo  # noqa: F401
from queryfit.cli import store  # noqa: F401  store check, store repair

# isort: on
from queryfit.cli.app import app, main

__all__ = ["app", "main"]
