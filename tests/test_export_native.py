"""Exports that load natively: a sentence-transformers folder (no queryfit needed) and ONNX.

The sentence-transformers folder is loaded in a subprocess where ``import queryfit`` fails, so
the test proves the claim rather than assuming it; ONNX graphs are run with onnxruntime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from queryfit.adapted import AdaptedEmbedder
from queryfit.adapters import FAMILIES, Adapter, BaseModel, save_adapter
from queryfit.adapters.convert import export_adapter
from queryfit.adapters.export_onnx import INPUT_NAME, OUTPUT_NAME, export_onnx
from queryfit.adapters.export_sentence_transformers import (
    _is_earlier_export,
    build_model,
    largest_difference,
)
from queryfit.embedders import get_embedder
from queryfit.errors import AdapterError

MINILM = "sentence-transformers:all-MiniLM-L6-v2"
TEXTS = ["how do I reset my password?", "Refunds are accepted within 30 days of delivery."]


def make(kind: str, dim: int, seed: int = 0, *, normalize: bool = True, **base: str) -> Adapter:
    rng = np.random.default_rng(seed)
    shapes = {
        "identity": {},
        "linear": {"weight": (dim, dim), "bias": (dim,)},
        "residual_mlp": {
            "in_weight": (7, dim),
            "in_bias": (7,),
            "out_weight": (dim, 7),
            "out_bias": (dim,),
        },
        "low_rank": {"down": (3, dim), "up": (dim, 3)},
    }[kind]
    params = {k: 0.3 * rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    if kind == "linear":
        params["weight"] += np.eye(dim, dtype=np.float32)
    return Adapter(
        type=kind,
        params=params,
        dim=dim,
        normalize=normalize,
        base_model={"id": MINILM, **base},
    )


# -- ONNX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_onnx_graph_matches_numpy(tmp_path, kind, normalize):
    adapter = make(kind, 16, normalize=normalize)
    files = export_onnx(adapter, tmp_path)
    assert [f.name for f in files] == ["adapter.onnx", "adapter_export.json"]
    session = onnxruntime.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 5):  # the batch dimension is free
        x = rng.normal(size=(batch, 16)).astype(np.float32)
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        np.testing.assert_allclose(got, adapter.transform(x), atol=1e-5)
    info = json.loads(files[1].read_text())
    assert info["input"]["name"] == INPUT_NAME and info["normalize"] is normalize
    assert info["max_abs_difference_from_queryfit"] <= 1e-5


def test_onnx_export_names_its_extra_when_onnx_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(AdapterError, match=r"pip install 'queryfit\[onnx\]'"):
        export_onnx(make("linear", 8), tmp_path)
    assert not (tmp_path / "adapter.onnx").exists()


def test_onnx_keeps_a_low_rank_adapter_small(tmp_path):
    adapter = make("low_rank", 384)
    graph = onnx.load(str(export_onnx(adapter, tmp_path)[0])).graph
    sizes = sorted(int(np.prod(init.dims)) for init in graph.initializer)
    assert sizes == [1, 3 * 384, 3 * 384]  # two thin matrices and eps, never 384 x 384


def test_onnx_export_from_the_command_line(tmp_path):
    save_adapter(make("residual_mlp", 16), tmp_path / "adapter")
    out = subprocess.run(
        [sys.executable, "-m", "queryfit", "export", "--adapter", str(tmp_path / "adapter")]
        + ["--format", "onnx", "--out", str(tmp_path / "onnx"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"] == [
        str(tmp_path / "onnx" / "adapter.onnx"),
        str(tmp_path / "onnx" / "adapter_export.json"),
    ]


# -- sentence-transformers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from sentence_transformers import SentenceTransformer

    base = get_embedder(MINILM)
    return base, SentenceTransformer(str(base.path), device="cpu", local_files_only=True)


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_every_family_becomes_sentence_transformers_modules(minilm, kind):
    base, original = minilm
    adapter = make(kind, 384, seed=2)
    model = build_model(adapter, original)
    diffs = largest_difference(model, adapter, base)
    assert diffs["encode_query"] <= 1e-5 and diffs["encode_document"] <= 1e-5
    if kind != "identity":  # the query route really is a different function
        assert not np.allclose(model.encode_query(TEXTS), model.encode_document(TEXTS), atol=1e-3)


LOAD_WITHOUT_QUERYFIT = textwrap.dedent(
    """
    import sys
    sys.modules["queryfit"] = None  # any import of queryfit now raises ImportError
    import numpy as np
    from sentence_transformers import SentenceTransformer
    folder, out, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    model = SentenceTransformer(folder, device="cpu", local_files_only=True)
    np.save(out + "/query.npy", model.encode_query(texts))
    np.save(out + "/document.npy", model.encode_document(texts))
    np.save(out + "/plain.npy", model.encode(texts))
    assert not [m for m in sys.modules if m.startswith("queryfit.")]
    """
)


def test_sentence_transformers_export_loads_without_queryfit(tmp_path):
    adapter = make("residual_mlp", 384, seed=4, query_prefix="query: ", document_prefix="")
    folder = tmp_path / "adapted-model"
    files = export_adapter(adapter, folder, format="sentence-transformers")
    assert folder / "modules.json" in files and folder / "queryfit_export.json" in files
    for config in folder.glob("**/*.json"):  # nothing in the folder names queryfit's code
        assert "queryfit." not in config.read_text(), config
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    loader = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_QUERYFIT, str(folder), str(tmp_path), *TEXTS],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert loader.returncode == 0, loader.stderr
    reference = AdaptedEmbedder.from_pretrained(adapter)  # with the "query: " prefix
    query, document = (np.load(tmp_path / f"{k}.npy") for k in ("query", "document"))
    np.testing.assert_allclose(query, reference.embed_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(document, reference.embed_documents(TEXTS), atol=1e-5)
    # plain encode() is the document route: an index built with it matches the base model's
    np.testing.assert_allclose(np.load(tmp_path / "plain.npy"), document, atol=1e-6)
    assert _is_earlier_export(folder)  # so exporting again may replace it whole


def test_sentence_transformers_export_refuses_api_models_and_foreign_folders(tmp_path):
    api = make("linear", 8)
    api.base_model = BaseModel("openai:text-embedding-3-small")
    with pytest.raises(AdapterError, match="queryfit serve"):
        export_adapter(api, tmp_path / "x", format="sentence-transformers")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(AdapterError, match="not empty"):
        export_adapter(make("linear", 384), foreign, format="sentence-transformers")
    assert (foreign / "notes.txt").read_text() == "keep me" and not _is_earlier_export(foreign)


def test_export_command_names_serve_for_an_api_model(tmp_path):
    api = make("linear", 8)
    api.base_model = BaseModel("openai:text-embedding-3-small")
    save_adapter(api, tmp_path / "adapter")
    out = subprocess.run(
        [sys.executable, "-m", "queryfit", "export", "--adapter", str(tmp_path / "adapter")]
        + ["--format", "sentence-transformers", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "queryfit serve --adapter" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not Path(tmp_path / "m").exists()
