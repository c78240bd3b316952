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
from queryfit.adapters.base import FAMILIES, SIMILARITIES, Adapter, array_problem, check_dim
from queryfit.errors import AdapterError

FORMAT_VERSION = 1
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter.json"


def save_adapter(adapter: Adapter, folder: str | Path) -> Path:
    """Write the adapter folder, replacing each file atomically so a crash never leaves half."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AdapterError(f"cannot write adapter to {folder}: it is a file; choose a folder path")
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
    weights = save(adapter.params, metadata={"format": "queryfit-adapter"})
    try:
        _io.write_bytes(folder / WEIGHTS_FILE, weights)
        write_json_atomic(folder / CONFIG_FILE, meta)
    except OSError as exc:
        raise AdapterError(
            f"cannot write adapter to {folder}: {exc.strerror or exc}; choose a writable folder"
        ) from exc
    return folder


_KNOWN_FIELDS = {
    "format_version",
    "queryfit_version",
    "type",
    "dim",
    "base_model",
    "similarity",
    "normalize",
    "parameters",
}


def _read_config(config_path: Path) -> dict[str, Any]:
    """adapter.json as a dict whose own fields have the right types, or AdapterError."""
    fix = "retrain the adapter with `queryfit train` or restore the folder from a backup"
    try:
        meta: Any = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{config_path} is not valid JSON ({exc}); {fix}") from exc
    except RecursionError:
        raise AdapterError(f"{config_path} is not valid JSON (nested too deeply); {fix}") from None
    except OSError as exc:
        raise AdapterError(f"cannot read {config_path} ({exc.strerror or exc}); {fix}") from exc
    version = meta.get("format_version", 0) if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise AdapterError(
            f"{config_path} is not a queryfit adapter config (expected an object with an integer "
            f"format_version); {fix}"
        )
    if version > FORMAT_VERSION:
        raise AdapterError(
            f"{config_path} was written by a newer queryfit (format {version}); upgrade queryfit"
        )
    if "type" not in meta or "dim" not in meta:
        missing = "type" if "type" not in meta else "dim"
        raise AdapterError(f"{config_path} lacks the field {missing!r}; {fix}")

    def wrong(field: str, expected: str) -> AdapterError:
        return AdapterError(
            f"{config_path}: {field} is {meta[field]!r}, expected {expected}; {fix}"
        )

    if not isinstance(meta["type"], str) or meta["type"] not in FAMILIES:
        raise wrong("type", f"one of {', '.join(sorted(FAMILIES))}")
    try:
        check_dim(meta["dim"])
    except AdapterError:
        raise wrong("dim", "a positive integer (the embedding dimension)") from None
    if "base_model" in meta:
        base = meta["base_model"]
        if not isinstance(base, dict):
            raise wrong("base_model", "an object with the model's id and prefixes")
        for key in ("id", "query_prefix", "document_prefix"):
            if base.get(key) is not None and not isinstance(base[key], str):
                raise AdapterError(
                    f"{config_path}: base_model.{key} is {base[key]!r}, expected a string; {fix}"
                )
    if "similarity" in meta and meta["similarity"] not in SIMILARITIES:
        raise wrong("similarity", f"one of {', '.join(SIMILARITIES)}")
    if "normalize" in meta and not isinstance(meta["normalize"], bool):
        raise wrong("normalize", "true or false")
    return meta


def _read_weights(weights_path: Path) -> dict[str, Any]:
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise AdapterError(
            f"{weights_path} is not a readable safetensors file ({exc}); retrain the adapter "
            "with `queryfit train` or restore the folder from a backup"
        ) from exc


def load_adapter(
    folder: str | Path,
    *,
    model_id: str | None = None,
    dim: int | None = None,
    force: bool = False,
) -> Adapter:
    """Load an adapter folder; refuse it for a different base model or dimension unless forced.

    Every field and array is checked here (types, shapes against ``dim``, finite values), so a
    damaged or hand-edited folder is refused with the file and array at fault instead of turning
    queries into NaN later.
    """
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{folder} is not an adapter folder (expected {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "create one with `queryfit train`"
        )
    meta = _read_config(config_path)
    params = _read_weights(weights_path)
    problem = array_problem(meta["type"], params, int(meta["dim"]))
    if problem is not None:
        raise AdapterError(
            f"{weights_path}: {problem} ({CONFIG_FILE} says type {meta['type']}, dim "
            f"{meta['dim']}); the folder is damaged or its files do not belong together: retrain "
            "the adapter with `queryfit train` or restore the folder from a backup"
        )
    adapter = Adapter(
        kind=meta["type"],
        params=params,
        dim=int(meta["dim"]),
        base_model=meta.get("base_model", {}),
        similarity=meta.get("similarity", "cosine"),
        normalize=meta.get("normalize", True),
        config={k: v for k, v in meta.items() if k not in _KNOWN_FIELDS},
    )
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
    _io.write_json(path, data)
