"""Adapter folders: ``adapter.safetensors`` (the arrays) + ``adapter.json`` (what they mean).

Loading never unpickles anything, and needs numpy and safetensors only. A folder records the base
model it was trained for, so using it with another model is refused unless forced: the arrays
would still multiply, but the result would be meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from queryfit import __version__, _io
from queryfit.adapters.base import FAMILIES, SIMILARITIES, Adapter, array_problem
from queryfit.adapters.record import FORMAT_VERSION, read_metadata, to_json
from queryfit.errors import AdapterError

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"
_FIX = "retrain the adapter with `queryfit train` or restore the folder from a backup"

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "check_fits",
    "load_adapter",
    "save_adapter",
]


def save_adapter(adapter: Adapter, folder: str | Path) -> Path:
    """Write the adapter folder, replacing each file atomically so a crash never leaves half."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AdapterError(f"cannot write adapter to {folder}: it is a file; choose a folder path")
    weights = save(adapter.params, metadata={"format": "queryfit-adapter"})
    try:
        _io.write_bytes(folder / WEIGHTS_FILE, weights)
        _io.write_json(folder / CONFIG_FILE, to_json(adapter, __version__))
    except OSError as exc:
        raise AdapterError(
            f"cannot write adapter to {folder}: {exc.strerror or exc}; choose a writable folder"
        ) from exc
    return folder


def _read_json(config_path: Path) -> Any:
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{config_path} is not valid JSON ({exc}); {_FIX}") from exc
    except RecursionError:
        raise AdapterError(f"{config_path} is not valid JSON (nested too deeply); {_FIX}") from None
    except OSError as exc:
        raise AdapterError(f"cannot read {config_path} ({exc.strerror or exc}); {_FIX}") from exc


def _read_weights(weights_path: Path) -> dict[str, Any]:
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise AdapterError(
            f"{weights_path} is not a readable safetensors file ({exc}); {_FIX}"
        ) from exc


def load_adapter(
    folder: str | Path,
    *,
    model_id: str | None = None,
    dim: int | None = None,
    force: bool = False,
) -> Adapter:
    """Load an adapter folder; refuse it for a different base model or dimension unless forced.

    Every field and array is checked (types, shapes against ``dim``, finite values), so a
    damaged folder is refused with the file and the field or array at fault, never applied.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{folder} is not an adapter folder (expected {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "create one with `queryfit train`"
        )
    fields = read_metadata(
        _read_json(config_path), str(config_path), types=FAMILIES, similarities=SIMILARITIES
    )
    params = _read_weights(weights_path)
    problem = array_problem(fields["type"], params, fields["dim"])
    if problem is not None:
        raise AdapterError(
            f"{weights_path}: {problem} ({CONFIG_FILE} says type {fields['type']}, dim "
            f"{fields['dim']}); the folder is damaged or its files do not belong together: {_FIX}"
        )
    try:
        adapter = Adapter(params=params, **fields)
    except AdapterError as exc:
        raise AdapterError(f"{config_path}: {exc}") from None
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
    trained_for = adapter.base_model.id
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
