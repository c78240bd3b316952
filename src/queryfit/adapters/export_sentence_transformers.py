"""The adapted model as a sentence-transformers folder that loads without queryfit.

The folder holds the base model's modules plus the adapter as plain ``Dense`` (and ``Normalize``)
modules on a query-only route of sentence-transformers' ``Router``, so
``SentenceTransformer(folder).encode_query(...)`` gives adapted vectors and ``encode_document``
(and plain ``encode``) the base model's, with the adapter's prefixes saved as the model's
prompts. Every module is sentence-transformers' own: anyone can load it, and any tool that takes
a sentence-transformers model (vector databases, LangChain, LlamaIndex, TEI's Python backend)
gets the adapter for free. The base model's weights are stored once, shared by both routes.

A residual MLP ``q + W2 relu(W1 q + b1) + b2`` becomes two ``Dense`` layers: the first also
computes ``relu(q)`` and ``relu(-q)``, the second adds ``relu(q) - relu(-q) = q`` back, exactly.

Example::

    from queryfit.adapters import load_adapter
    from queryfit.adapters.export_sentence_transformers import export_sentence_transformers
    export_sentence_transformers(load_adapter("adapter/"), "adapted-model/")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from queryfit._io import write_json
from queryfit.adapters.base import Adapter, adapter_matrix
from queryfit.adapters.io import check_fits
from queryfit.errors import AdapterError

INFO_FILE = "queryfit_export.json"
#: Texts the finished folder is checked on, against queryfit's own vectors.
CHECK_TEXTS = (
    "how do I reset my password?",
    "What were the company's total revenues in 2021?",
    "A short passage about shipping times and the return policy.",
)
TOLERANCE = 1e-5


def _st_modules() -> tuple[Any, Any, Any]:
    """``Dense``, ``Normalize``, ``Router`` wherever this sentence-transformers keeps them."""
    try:
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router
    except ImportError:
        try:  # sentence-transformers 5.x
            from sentence_transformers.models import Dense, Normalize, Router
        except ImportError as exc:
            raise AdapterError(
                f"exporting for sentence-transformers needs sentence-transformers 5 or later "
                f"with its Router module ({exc}); install it with `pip install 'queryfit[train]'`"
            ) from None
    return Dense, Normalize, Router


def _base_embedder(adapter: Adapter, model: Any, force: bool) -> Any:
    """The local sentence-transformers base model, or an error pointing API models to serve."""
    spec = model if model is not None else adapter.base_model.id
    if spec is None:
        raise AdapterError(
            "this adapter does not record its base model; pass --model with the local "
            "sentence-transformers folder it was trained for"
        )
    serve_hint = (
        "an API model cannot be packed into a sentence-transformers folder; serve the adapter "
        "in front of it instead: `queryfit serve --adapter DIR` (an OpenAI-compatible "
        "endpoint), or export --format onnx / npy to apply it to the API's query vectors yourself"
    )
    from queryfit.embedders import get_embedder, is_api_model

    if is_api_model(spec):
        raise AdapterError(f"{spec}: {serve_hint}")
    from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder

    base = get_embedder(
        spec,
        query_prefix=adapter.base_model.query_prefix,
        document_prefix=adapter.base_model.document_prefix,
    )
    if not isinstance(base, SentenceTransformerEmbedder):
        raise AdapterError(f"{getattr(base, 'model_id', spec)}: {serve_hint}")
    if not force:
        check_fits(adapter, base.model_id, None)
    return base


def _is_earlier_export(folder: Path) -> bool:
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == "sentence-transformers"


def adapter_modules(adapter: Adapter) -> list[Any]:
    """The adapter as sentence-transformers modules applied after the base model's own."""
    import torch

    Dense, Normalize, _ = _st_modules()
    dim = adapter.dim
    p = adapter.params

    def dense(weight: np.ndarray, bias: np.ndarray, activation: Any) -> Any:
        out_features, in_features = weight.shape
        return Dense(
            in_features,
            out_features,
            bias=True,
            activation_function=activation,
            init_weight=torch.from_numpy(np.ascontiguousarray(weight, np.float32)),
            init_bias=torch.from_numpy(np.ascontiguousarray(bias, np.float32)),
        )

    modules: list[Any] = []
    if adapter.type in ("linear", "low_rank"):
        weight, bias = adapter_matrix(adapter)
        modules.append(dense(weight, bias, torch.nn.Identity()))
    elif adapter.type == "residual_mlp":
        eye = np.eye(dim, dtype=np.float32)
        zeros = np.zeros(dim, np.float32)
        w1 = np.concatenate([p["in_weight"], eye, -eye])
        b1 = np.concatenate([p["in_bias"], zeros, zeros])
        w2 = np.concatenate([p["out_weight"], eye, -eye], axis=1)
        modules.append(dense(w1, b1, torch.nn.ReLU()))
        modules.append(dense(w2, p["out_bias"], torch.nn.Identity()))
    elif adapter.type != "identity":
        raise AdapterError(f"no sentence-transformers export for {adapter.type} adapters yet")
    if adapter.normalize:
        modules.append(Normalize())
    return modules


def export_sentence_transformers(
    adapter: Adapter,
    out: str | Path,
    *,
    model: Any = None,
    force: bool = False,
    check: bool = True,
) -> list[Path]:
    """Write the adapted model as a sentence-transformers folder at ``out``; returns its files.

    ``model`` is the base model (a spec or a local folder) when the one recorded in the adapter
    is not where it was; only local sentence-transformers models can be exported (an API model
    gets an error pointing to ``queryfit serve``). With ``check``, the folder is loaded back and
    its vectors compared with queryfit's within 1e-5.
    """
    base = _base_embedder(adapter, model, force)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AdapterError(f"cannot export to {out}: it is a file; choose a folder path")
    if out.is_dir() and any(out.iterdir()):
        if not _is_earlier_export(out):
            raise AdapterError(
                f"{out} is not empty; export a sentence-transformers model to a new folder"
            )
        shutil.rmtree(out)  # an earlier export of ours: replaced whole, no stale modules left
    from sentence_transformers import SentenceTransformer

    from queryfit.embedders.sentence_transformers import _quiet_transformers, ensure_offline

    ensure_offline()
    # A fresh copy: the modules become part of the new model, the cached one stays untouched.
    with _quiet_transformers():
        original = SentenceTransformer(str(base.path), device="cpu", local_files_only=True)
    if not force:
        check_fits(adapter, base.model_id, base.dim)
    exported = build_model(adapter, original, base.query_prefix, base.document_prefix)
    with _quiet_transformers():
        exported.save(str(out))
    info = {
        "format": "sentence-transformers",
        "base_model": base.model_id,
        "adapter_type": adapter.type,
        "routes": {
            "query": "base model, then the adapter (encode_query)",
            "document": "base model only (encode_document, and encode without a task)",
        },
        "prompts": {"query": base.query_prefix, "document": base.document_prefix},
        "loads_with": "sentence_transformers.SentenceTransformer(folder); queryfit not needed",
    }
    if check:
        info["max_abs_difference_from_queryfit"] = check_export(out, adapter, base)
    info_path = write_json(out / INFO_FILE, info)
    return sorted({*out.iterdir(), info_path})


def build_model(
    adapter: Adapter, original: Any, query_prefix: str = "", document_prefix: str = ""
) -> Any:
    """The adapted model in memory: ``original``'s modules on both routes of a ``Router``, the
    adapter's after them on the query route; the prefixes become the model's prompts."""
    from sentence_transformers import SentenceTransformer

    _, _, Router = _st_modules()
    base_modules = list(original)
    # Documents first, so the shared base modules are saved under document_* names.
    router = Router(
        {"document": base_modules, "query": [*base_modules, *adapter_modules(adapter)]},
        default_route="document",
    )
    model = SentenceTransformer(
        modules=[router],
        device="cpu",
        prompts={"query": query_prefix, "document": document_prefix},
        default_prompt_name=None,
    )
    model.similarity_fn_name = original.similarity_fn_name or "cosine"
    return model


def largest_difference(model: Any, adapter: Adapter, base: Any) -> dict[str, float]:
    """How far ``model.encode_query`` / ``encode_document`` are from queryfit's vectors."""
    texts = list(CHECK_TEXTS)
    query = model.encode_query(texts, convert_to_numpy=True)
    document = model.encode_document(texts, convert_to_numpy=True)
    adapted = adapter.transform(base.embed_queries(texts))  # what AdaptedEmbedder gives
    return {
        "encode_query": float(np.abs(query - adapted).max()),
        "encode_document": float(np.abs(document - base.embed_documents(texts)).max()),
    }


def check_export(folder: str | Path, adapter: Adapter, base: Any) -> float:
    """Load ``folder`` as a plain SentenceTransformer and compare it with queryfit's vectors."""
    from sentence_transformers import SentenceTransformer

    from queryfit.embedders.sentence_transformers import _quiet_transformers

    with _quiet_transformers():
        loaded = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    diffs = largest_difference(loaded, adapter, base)
    worst = max(diffs, key=lambda k: diffs[k])
    if not diffs[worst] <= TOLERANCE:
        raise AdapterError(
            f"the exported model's {worst} differs from queryfit's vectors by {diffs[worst]:.2e} "
            f"(> {TOLERANCE:g}); please report this as a queryfit bug"
        )
    return diffs[worst]
