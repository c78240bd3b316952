"""Adapters in and out of other formats.

In: an adapter trained by LlamaIndex's ``EmbeddingAdapterFinetuneEngine`` (a folder with
``config.json`` + ``pytorch_model.bin``), read with ``torch.load(..., weights_only=True)`` so no
pickled code can run, and converted to the same function in queryfit's format.

Out: a plain matrix pair for any language or vector database, as ``.npy`` files or one
safetensors file, or a LlamaIndex adapter folder for ``AdapterEmbeddingModel``.

Example::

    from queryfit.adapters.convert import load_llamaindex_adapter, export_adapter
    adapter = load_llamaindex_adapter("li_adapter/", base_model="openai:text-embedding-3-small")
    export_adapter(adapter, "export/", format="npy")   # weight.npy, bias.npy, adapter_export.json
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from queryfit import _io
from queryfit.adapters.base import Adapter, adapter_matrix
from queryfit.adapters.io import CONFIG_FILE, load_adapter, save_adapter
from queryfit.adapters.record import BaseModel
from queryfit.errors import AdapterError

LLAMAINDEX_CONFIG = "config.json"
LLAMAINDEX_WEIGHTS = "pytorch_model.bin"
EXPORT_FORMATS = ("npy", "safetensors", "llamaindex", "sentence-transformers", "onnx")
EXPORT_INFO = "adapter_export.json"
MATRIX_FILE = "adapter_matrix.safetensors"


def is_llamaindex_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds LlamaIndex's ``config.json`` and ``pytorch_model.bin``."""
    folder = Path(folder)
    return (folder / LLAMAINDEX_CONFIG).is_file() and (folder / LLAMAINDEX_WEIGHTS).is_file()


# -- in ------------------------------------------------------------------------------------------


def _load_state_dict(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise AdapterError(
            f"reading {path} needs torch (LlamaIndex saves adapters with torch.save); install it "
            "with `pip install 'queryfit[train]'`"
        ) from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refusals and corrupt files alike
        raise AdapterError(
            f"cannot read {path} as plain tensors ({type(exc).__name__}: {str(exc)[:200]}); "
            "queryfit only loads weights (weights_only=True), never pickled code: re-save the "
            "adapter's state_dict with torch.save(adapter.state_dict(), ...)"
        ) from None
    if not isinstance(state, dict) or not all(hasattr(v, "numpy") for v in state.values()):
        raise AdapterError(f"{path} does not hold a state dict of tensors")
    return {k: v.detach().cpu().float().numpy() for k, v in state.items()}


def _need(state: dict[str, np.ndarray], name: str, path: Path) -> np.ndarray:
    if name not in state:
        raise AdapterError(
            f"{path} lacks the tensor {name!r} (has {', '.join(sorted(state)) or 'none'}); is "
            "this a LlamaIndex LinearLayer or TwoLayerNN adapter?"
        )
    return state[name]


def load_llamaindex_adapter(
    folder: str | Path,
    *,
    base_model: str | None = None,
    query_prefix: str = "",
    document_prefix: str = "",
) -> Adapter:
    """Convert a LlamaIndex adapter folder to an ``Adapter`` computing the same function.

    Supports ``LinearLayer`` (``LinearAdapterEmbeddingModel``'s default) and ``TwoLayerNN`` with
    ReLU, with or without ``add_residual``. LlamaIndex does not record the base model: pass
    ``base_model`` (e.g. ``"openai:text-embedding-3-small"``) so the adapter refuses other models.
    Outputs are not normalised, as in LlamaIndex; cosine rankings are unaffected either way.
    """
    folder = Path(folder)
    if not is_llamaindex_folder(folder):
        raise AdapterError(
            f"{folder} is not a LlamaIndex adapter folder (expected {LLAMAINDEX_CONFIG} and "
            f"{LLAMAINDEX_WEIGHTS}, as written by LlamaIndex's BaseAdapter.save)"
        )
    try:
        config = json.loads((folder / LLAMAINDEX_CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{folder / LLAMAINDEX_CONFIG} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "in_features" not in config:
        raise AdapterError(f"{folder / LLAMAINDEX_CONFIG} lacks in_features; not an adapter config")
    weights_path = folder / LLAMAINDEX_WEIGHTS
    state = _load_state_dict(weights_path)
    dim = int(config["in_features"])
    out_dim = int(config.get("out_features", dim))
    if out_dim != dim:
        raise AdapterError(
            f"{folder}: the adapter maps {dim} to {out_dim} dimensions; a query adapter must keep "
            "the documents' dimension to be used without re-embedding them"
        )
    if "hidden_features" in config or "linear1.weight" in state:
        activation = config.get("activation_fn_str", "relu")
        if activation != "relu":
            raise AdapterError(
                f"{folder}: TwoLayerNN with activation {activation!r} has no queryfit "
                "equivalent (only relu); retrain it with queryfit"
            )
        w1, b1 = _need(state, "linear1.weight", weights_path), state.get("linear1.bias")
        w2, b2 = _need(state, "linear2.weight", weights_path), state.get("linear2.bias")
        hidden = w1.shape[0]
        b1 = np.zeros(hidden, np.float32) if b1 is None else b1
        b2 = np.zeros(dim, np.float32) if b2 is None else b2
        if config.get("add_residual", False):
            rw = float(_need(state, "residual_weight", weights_path).reshape(-1)[0])
            params = {"in_weight": w1, "in_bias": b1, "out_weight": rw * w2, "out_bias": rw * b2}
        else:
            # W2 relu(W1 q + b1) + b2 as a residual MLP: relu(q) - relu(-q) = q, so extra hidden
            # units (+I, -I) with output weights (-I, +I) cancel the residual exactly.
            eye = np.eye(dim, dtype=np.float32)
            params = {
                "in_weight": np.concatenate([w1, eye, -eye]),
                "in_bias": np.concatenate([b1, np.zeros(2 * dim, np.float32)]),
                "out_weight": np.concatenate([w2, -eye, eye], axis=1),
                "out_bias": b2,
            }
        family = "residual_mlp"
    else:
        weight = _need(state, "linear.weight", weights_path)
        params = {"weight": weight}
        if "linear.bias" in state:
            params["bias"] = state["linear.bias"]
        family = "linear"
    for name, array in params.items():
        if not np.isfinite(array).all():
            raise AdapterError(f"{weights_path}: {name} holds NaN or inf values")
    base = BaseModel(base_model, query_prefix, document_prefix) if base_model else BaseModel()
    try:
        adapter = Adapter(
            type=family,
            params=params,
            dim=dim,
            base_model=base,
            normalize=False,
            imported_from={"format": "llamaindex", "config": config},
        )
        adapter.transform(np.zeros((1, dim), np.float32))  # shapes agree
    except (ValueError, AdapterError) as exc:
        raise AdapterError(f"{folder}: tensors do not fit the config ({exc})") from None
    return adapter


# -- out -----------------------------------------------------------------------------------------


def _formula(adapter: Adapter) -> str:
    tail = "; then divide by its L2 norm" if adapter.normalize else ""
    if adapter.type == "residual_mlp":
        return "q' = q + out_weight @ relu(in_weight @ q + in_bias) + out_bias" + tail
    return "q' = weight @ q + bias  (row vectors: Q' = Q @ weight.T + bias)" + tail


def export_adapter(
    adapter: Adapter,
    out: str | Path,
    *,
    format: str = "npy",
    model: Any = None,
    force: bool = False,
) -> list[Path]:
    """Write the adapter for use outside queryfit; returns the files written.

    ``npy``: ``weight.npy`` + ``bias.npy`` (float32) for linear families, or every array for a
    residual MLP, plus ``adapter_export.json`` with the formula. ``safetensors``: the same arrays
    in one ``adapter_matrix.safetensors``. ``llamaindex``: ``config.json`` + ``pytorch_model.bin``
    loadable by LlamaIndex's ``AdapterEmbeddingModel`` (needs torch). ``onnx``: ``adapter.onnx``
    mapping base query vectors to adapted ones. Apply these to queries only.
    ``sentence-transformers``: the whole adapted model (base model + adapter on the query route),
    loadable by ``SentenceTransformer(out)`` without queryfit; ``model`` names the local base
    model when it is not where the adapter recorded it, ``force`` skips the base-model check.
    """
    if format not in EXPORT_FORMATS:
        raise AdapterError(
            f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if format == "sentence-transformers":
        from queryfit.adapters.export_sentence_transformers import export_sentence_transformers

        return export_sentence_transformers(adapter, out, model=model, force=force)
    if format == "onnx":
        from queryfit.adapters.export_onnx import export_onnx

        return export_onnx(adapter, out)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"cannot export to {out}: it is a file; choose a folder path")
    out.mkdir(parents=True, exist_ok=True)
    if format == "llamaindex":
        return _export_llamaindex(adapter, out)
    if adapter.type == "residual_mlp":
        arrays = {k: np.ascontiguousarray(v, np.float32) for k, v in adapter.params.items()}
    else:
        weight, bias = adapter_matrix(adapter)
        arrays = {"weight": np.ascontiguousarray(weight), "bias": np.ascontiguousarray(bias)}
    written: list[Path] = []
    if format == "npy":
        for name, array in arrays.items():
            path = out / f"{name}.npy"
            with _io.atomic_file(path, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            written.append(path)
    else:
        from safetensors.numpy import save

        path = out / MATRIX_FILE
        _io.write_bytes(path, save(arrays, metadata={"format": "queryfit-adapter-export"}))
        written.append(path)
    info = {
        "type": "residual_mlp" if adapter.type == "residual_mlp" else "affine",
        "source_type": adapter.type,
        "dim": adapter.dim,
        "formula": _formula(adapter),
        "normalize": adapter.normalize,
        "apply_to": "query vectors only; document vectors stay as the base model made them",
        "similarity": adapter.similarity,
        "base_model": asdict(adapter.base_model),
        "arrays": {name: list(a.shape) for name, a in arrays.items()},
        "files": [p.name for p in written],
    }
    info_path = out / EXPORT_INFO
    _io.write_json(info_path, info)
    return [*written, info_path]


def _export_llamaindex(adapter: Adapter, out: Path) -> list[Path]:
    try:
        import torch
    except ImportError as exc:
        raise AdapterError(
            "exporting for LlamaIndex needs torch; install it with `pip install "
            "'queryfit[train]'`, or export format='npy'"
        ) from exc
    dim = adapter.dim
    if adapter.type == "residual_mlp":
        p = adapter.params
        config: dict[str, Any] = {
            "in_features": dim,
            "hidden_features": int(p["in_weight"].shape[0]),
            "out_features": dim,
            "bias": True,
            "activation_fn_str": "relu",
            "add_residual": True,
        }
        state = {
            "linear1.weight": p["in_weight"],
            "linear1.bias": p["in_bias"],
            "linear2.weight": p["out_weight"],
            "linear2.bias": p["out_bias"],
            "residual_weight": np.ones(1, np.float32),
        }
        note = "load with adapter_cls=TwoLayerNN"
    else:
        weight, bias = adapter_matrix(adapter)
        config = {"in_features": dim, "out_features": dim, "bias": True}
        state = {"linear.weight": weight, "linear.bias": bias}
        note = "load with the default LinearLayer"
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in state.items()}
    _io.write_text(out / LLAMAINDEX_CONFIG, json.dumps(config) + "\n")
    with _io.atomic_file(out / LLAMAINDEX_WEIGHTS, "wb") as fh:
        torch.save(tensors, fh)
    readme = out / "QUERYFIT_EXPORT.txt"
    _io.write_text(
        readme,
        f"Exported by queryfit from a {adapter.type} adapter for "
        f"{adapter.base_model.id or 'an unrecorded base model'}; {note}. LlamaIndex does "
        "not normalise the output; cosine similarity ranks the same either way.\n",
    )
    return [out / LLAMAINDEX_CONFIG, out / LLAMAINDEX_WEIGHTS, readme]


def import_llamaindex_adapter(
    source: str | Path,
    out: str | Path,
    *,
    base_model: str | None = None,
    query_prefix: str = "",
    document_prefix: str = "",
) -> Adapter:
    """Convert a LlamaIndex adapter folder and save it as a queryfit adapter folder at ``out``."""
    adapter = load_llamaindex_adapter(
        source, base_model=base_model, query_prefix=query_prefix, document_prefix=document_prefix
    )
    save_adapter(adapter, out)
    return adapter


def as_adapter(adapter: Adapter | str | Path, *, force: bool = False) -> Adapter:
    """An ``Adapter`` from an object, a queryfit adapter folder or a LlamaIndex adapter folder."""
    if isinstance(adapter, Adapter):
        return adapter
    folder = Path(adapter)
    if is_llamaindex_folder(folder) and not (folder / CONFIG_FILE).is_file():
        return load_llamaindex_adapter(folder)
    return load_adapter(folder, force=force)
