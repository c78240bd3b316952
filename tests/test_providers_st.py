"""sentence-transformers: model-declared query/document prompts and the backend option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from queryfit.embedders import get_embedder
from queryfit.embedders.bundled import default_model_path
from queryfit.embedders.sentence_transformers import SentenceTransformerEmbedder, model_prompts
from queryfit.errors import EmbedderError


def linked_copy(dst: Path, prompts: dict | None = None) -> Path:
    """The bundled model under another folder name (symlinks), optionally declaring prompts."""
    src = default_model_path()
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name != "config_sentence_transformers.json":
            (dst / item.name).symlink_to(item)
    config = json.loads((src / "config_sentence_transformers.json").read_text())
    if prompts is not None:
        config["prompts"] = prompts
    (dst / "config_sentence_transformers.json").write_text(json.dumps(config))
    return dst


def test_declared_prompts_become_prefixes(tmp_path: Path) -> None:
    folder = linked_copy(tmp_path / "my-model", {"query": "query: ", "passage": "passage: "})
    emb = get_embedder(f"st:{folder}")
    assert (emb.query_prefix, emb.document_prefix) == ("query: ", "passage: ")
    assert emb.store_key("query") != emb.store_key("document")
    explicit = get_embedder(f"st:{folder}", query_prefix="Q: ")
    assert (explicit.query_prefix, explicit.document_prefix) == ("Q: ", "")
    off = SentenceTransformerEmbedder(folder, use_model_prompts=False)
    assert (off.query_prefix, off.document_prefix) == ("", "")


def test_known_families_get_their_prompts(tmp_path: Path) -> None:
    e5 = get_embedder(f"st:{linked_copy(tmp_path / 'multilingual-e5-small')}")
    assert (e5.query_prefix, e5.document_prefix) == ("query: ", "passage: ")
    assert model_prompts(None, "BAAI/bge-small-en-v1.5")[0].startswith("Represent this")
    assert model_prompts(None, "nomic-embed-text-v1.5") == ("search_query: ", "search_document: ")
    assert model_prompts(None, "all-MiniLM-L6-v2") is None
    bundled = get_embedder()
    assert bundled.query_prefix == bundled.document_prefix == ""


def test_backend_option() -> None:
    with pytest.raises(EmbedderError, match="unknown sentence-transformers backend"):
        get_embedder("st:all-MiniLM-L6-v2", backend="tensorrt")
    onnx = get_embedder("st:all-MiniLM-L6-v2", backend="onnx")
    torch = get_embedder("st:all-MiniLM-L6-v2")
    assert onnx.model_id == torch.model_id  # same model: adapters carry over
    assert "backend=onnx" in onnx._key_options() and not torch._key_options()
    try:
        import onnxruntime  # noqa: F401
        import optimum  # noqa: F401
    except ImportError:
        with pytest.raises(EmbedderError, match="onnx"):
            _ = onnx.dim
