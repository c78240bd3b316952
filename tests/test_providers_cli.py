"""The CLI with API models: --base-url/--dimensions/--api-key, reruns, export and import."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from servers.embeddings_server import EmbeddingsServer
from typer.testing import CliRunner

from queryfit.adapters import Adapter, load_adapter, save_adapter
from queryfit.data import QADataset, save_dataset

SECRET = "sk-cli-secret-abcdef"


def run(*args: str, cwd: Path, **env: str) -> Result:
    """The real CLI app, in process (a subprocess per call would cost seconds of imports)."""
    from queryfit.cli import app

    clean = {k: None for k in os.environ if k.endswith("_API_KEY")}
    full = clean | {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")} | env
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), env=full, catch_exceptions=False)
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def server():
    with EmbeddingsServer(required_key=SECRET) as s:
        yield s


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    corpus = {f"d{i}": f"passage {i} on subject {i % 5} with detail {i}" for i in range(30)}
    queries = {f"q{i}": f"what about subject {i % 5} detail {i}" for i in range(20)}
    save_dataset(
        QADataset(queries, corpus, {f"q{i}": [f"d{i}"] for i in range(20)}), tmp_path / "d.json"
    )
    return tmp_path


def test_embed_with_base_url_twice_second_run_makes_zero_requests(server, workdir) -> None:
    server.reset()
    args = ["embed", "--data", "d.json", "--model", "openai:toy", "--dimensions", "24"]
    args += ["--base-url", f"{server.url}/v1", "--json"]
    first = run(*args, cwd=workdir, OPENAI_API_KEY=SECRET)
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["texts_embedded"] == 50 and report["model_id"] == "openai:toy"
    assert server.requests and all(r.body["dimensions"] == 24 for r in server.requests)
    server.reset()
    second = run(*args, cwd=workdir, OPENAI_API_KEY=SECRET)
    report = json.loads(second.stdout)
    assert report["model_calls"] == 0 and report["texts_from_store"] == 50
    assert server.requests == []
    assert SECRET.encode() not in (workdir / "store.sqlite").read_bytes()


def test_key_from_flag_and_wrong_key_is_one_line(server, workdir) -> None:
    args = ["embed", "--data", "d.json", "--model", "cohere:toy", "--base-url", server.url]
    ok = run(*args, "--api-key", SECRET, "--json", cwd=workdir)
    assert ok.exit_code == 0, ok.stderr
    # A fresh store: with the warm one nothing is sent at all (not even a dimension probe), so
    # no server would get to reject the key.
    bad = run(*args, "--api-key", "sk-nope", cwd=workdir, QUERYFIT_STORE=str(workdir / "b.sqlite"))
    assert bad.exit_code == 2
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "$COHERE_API_KEY" in errors[0]
    assert "sk-nope" not in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "openai:text-embedding-3-small"], "$OPENAI_API_KEY"),
        (["--base-url", "http://127.0.0.1:1/v1"], "apply to API models"),
        (["--model", "openai:m", "--base-url", "http://127.0.0.1:1/v1"], "cannot connect"),
        (["--model", "openai:m", "--base-url", "ftp://x"], "http://"),
    ],
)
def test_model_mistakes_are_one_line(workdir, args, message) -> None:
    result = run("embed", "--data", "d.json", *args, cwd=workdir)
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_evaluate_with_base_url_uses_the_adapters_model(server, workdir) -> None:
    rng = np.random.default_rng(0)
    adapter = Adapter(
        type="linear",
        params={"weight": np.eye(24) + rng.normal(0, 0.1, (24, 24))},
        dim=24,
        base_model={"id": "openai:toy", "query_prefix": "", "document_prefix": ""},
    )
    save_adapter(adapter, workdir / "adapter")
    result = run(
        "evaluate",
        "--data",
        "d.json",
        "--adapter",
        "adapter",
        "--base-url",
        f"{server.url}/v1",
        "--dimensions",
        "24",
        "--resamples",
        "200",
        "--json",
        cwd=workdir,
        OPENAI_API_KEY=SECRET,
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model_id"] == "openai:toy" and report["queries"] == 20


def test_adapter_records_the_endpoint_so_evaluate_needs_no_flags(server, workdir) -> None:
    """train records the API model's endpoint and dimensions (never the key) in adapter.json;
    evaluate then finds the same model with only the key from the environment."""
    model = ["--model", "openai:toy", "--base-url", f"{server.url}/v1", "--dimensions", "24"]
    trained = run(
        "train", "--data", "d.json", "--out", "adapter", *model, "--dev-fraction", "0.3",
        "--epochs", "1", "--json", cwd=workdir, OPENAI_API_KEY=SECRET,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    meta = (workdir / "adapter" / "adapter.json").read_text()
    assert SECRET not in meta
    base = json.loads(meta)["base_model"]
    assert base["endpoint"] == f"{server.url}/v1" and base["dimensions"] == 24
    server.reset()
    result = run(
        "evaluate", "--data", "d.json", "--adapter", "adapter", "--resamples", "200", "--json",
        cwd=workdir, OPENAI_API_KEY=SECRET,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model_calls"] == 0  # the same store entries: same model


def test_export_and_import_llamaindex_commands(workdir) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    adapter = Adapter(
        type="linear",
        params={"weight": rng.normal(size=(8, 8)), "bias": rng.normal(size=8)},
        dim=8,
        base_model={"id": "openai:toy"},
    )
    save_adapter(adapter, workdir / "adapter")
    exported = run("export", "-a", "adapter", "-o", "npy", "--json", cwd=workdir)
    assert exported.exit_code == 0, exported.stderr
    assert {Path(f).name for f in json.loads(exported.stdout)["files"]} >= {"weight.npy"}
    np.testing.assert_allclose(np.load(workdir / "npy" / "weight.npy"), adapter.params["weight"])

    li = run("export", "-a", "adapter", "-o", "li", "--format", "llamaindex", cwd=workdir)
    assert li.exit_code == 0, li.stderr
    back = run("import-llamaindex", "li", "-o", "back", "-m", "openai:toy", cwd=workdir)
    assert back.exit_code == 0, back.stderr
    again = load_adapter(workdir / "back", model_id="openai:toy")
    q = rng.normal(size=(3, 8)).astype(np.float32)
    a = again.transform(q)
    np.testing.assert_allclose(
        a / np.linalg.norm(a, axis=1, keepdims=True), adapter.transform(q), atol=1e-5
    )
    wrong = run("export", "-a", "adapter", "-o", "x", "--format", "tflite", cwd=workdir)
    assert wrong.exit_code == 2 and "unknown export format" in wrong.stderr
    missing = run("import-llamaindex", "nowhere", "-o", "y", cwd=workdir)
    assert missing.exit_code == 2 and "not a LlamaIndex adapter folder" in missing.stderr
