"""Adapter folders: ``adapter.safetensors`` (the arrays) + ``adapter.json`` (what they mean).

Loading never unpickles anything, and needs numpy and safetensors only. A folder records the base
model it was trained for, so using it with another model is refused unless forced: the arrays
would still multiply, but the result would be meaningless.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from queryfit import __version__
from queryfit.adapters.base import Adapter
from queryfit.errors import AdapterError

FORMAT_VERSION = 1
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"


def save_adapter(adapter: Adapter, folder: str | Path) -> Path:
    """Write the adapter folder, replacing each file atomically so a crash never leaves half."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AdapterError(f"cannot write adapter to {folder}: it is a file; choose a folder path")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "queryfit_version": __version__,
        "type": adapter.kind,
        "dim": adapter.dim,
        "base_model": adapter.base_model,
        "similarity": adapter.similarity,
        "normalize": adapter.normalize,
        "parameters": adapter.num_parameters,
        **adapter.config,
    }
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
        tmp_weights = Path(tmp.name)
    try:
        save_file(adapter.params, str(tmp_weights), metadata={"format": "queryfit-adapter"})
        os.replace(tmp_weights, folder / WEIGHTS_FILE)
    finally:
        tmp_weights.unlink(missing_ok=True)  # gone after the replace; a leftover only on failure
    write_json_atomic(folder / CONFIG_FILE, meta)
    return folder


def load_adapter(
    folder: str | Path,
    *,
    model_id: str | None = None,
    dim: int | None = None,
    force: bool = False,
) -> Adapter:
    """Load an adapter folder; refuse it for a different base model or dimension unless forced."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{folder} is not an adapter folder (expected {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "create one with `queryfit train`"
        )
    try:
        meta: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(
            f"{config_path} is not valid JSON ({exc}); retrain or restore it"
        ) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version", 0), int):
        raise AdapterError(
            f"{config_path} is not a queryfit adapter config (expected an object with an integer "
            "format_version); retrain or restore it"
        )
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(
            f"{config_path} was written by a newer queryfit (format {meta['format_version']}); "
            "upgrade queryfit"
        )
    try:
        params = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AdapterError(f"{weights_path} is not a readable safetensors file ({exc})") from exc

    known = {
        "format_version",
        "queryfit_version",
        "type",
        "dim",
        "base_model",
        "similarity",
        "normalize",
        "parameters",
    }
    try:
        adapter = Adapter(
            kind=meta["type"],
            params=params,
            dim=int(meta["dim"]),
            base_model=meta.get("base_model", {}),
            similarity=meta.get("similarity", "cosine"),
            normalize=bool(meta.get("normalize", True)),
            config={k: v for k, v in meta.items() if k not in known},
        )
    except KeyError as exc:
        raise AdapterError(f"{config_path} lacks the field {exc}; retrain the adapter") from exc
    except (TypeError, ValueError) as exc:
        raise AdapterError(
            f"{config_path} has a malformed field ({exc}); retrain the adapter"
        ) from exc
    if not force:
        check_fits(adapter, model_id, dim, source=str(folder))
    return adapter


def check_fits(
    adapter: Adapter, model_id: str | None, dim: int | None, *, source: str = "adapter"
) -> None:
    """Refuse an adapter trained for another base model or dimension.

    The arrays would still multiply, but the result would be meaningless. ``None`` skips that
    check (a framework object's identity cannot always be told).
    """
    trained_for = adapter.base_model.get("id")
    if model_id is not None and trained_for and trained_for != model_id:
        raise AdapterError(
            f"{source} was trained for {trained_for}, not {model_id}; use it with its own base "
            "model, or pass --force (force=True) if you know they match"
        )
    if dim is not None and dim != adapter.dim:
        raise AdapterError(
            f"{source} expects {adapter.dim}-dimensional queries, {model_id or 'the model'} "
            f"gives {dim}; use the adapter's base model ({trained_for or 'unknown'})"
        )


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented UTF-8 JSON through a temporary file, so no reader sees half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
