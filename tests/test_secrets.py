"""No API key is ever echoed: every provider, the LLM client and the CLI against echoing servers.

The test servers' ``echo_headers`` mode answers errors the way some proxies answer a rejected
key: the request's headers, ``Authorization`` / ``api-key`` included, in the error body (JSON or
plain text). Whatever the path (the key given as an argument or through the environment, a 401
or a retried 500, Python exception, log line, CLI stdout/stderr, files written), the key must
not appear, and the masked marker must, which proves the echo reached the user's eyes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
import types
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import Result
from servers.chat_server import ChatServer
from servers.embeddings_server import EmbeddingsServer, toy_vector
from typer.testing import CliRunner

from queryfit._http import MASK
from queryfit.data import QADataset, save_dataset
from queryfit.embedders import get_embedder
from queryfit.errors import EmbedderError, GenerationError
from queryfit.generation import ChatClient, RequestFailed

SECRET = "sk-proxy-echo-SECRET-0123456789abcdef"
ACCEPTED = "sk-the-only-key-the-server-accepts"
#: spec, path after the server URL for --base-url, and the environment variable of the key.
PROVIDERS = {
    "openai": ("openai:toy", "/v1", "OPENAI_API_KEY"),
    "azure-openai": ("azure-openai:toy", "", "AZURE_OPENAI_API_KEY"),
    "cohere": ("cohere:toy", "", "COHERE_API_KEY"),
    "voyage": ("voyage:toy", "/v1", "VOYAGE_API_KEY"),
}
KEY_ENV = [env for _, _, env in PROVIDERS.values()] + ["QUERYFIT_LLM_API_KEY", "MISTRAL_API_KEY"]


def leaks(text: str) -> bool:
    """The key, or any 10-character piece of it, in ``text``."""
    return any(SECRET[i : i + 10] in text for i in range(len(SECRET) - 9))


def full_text(exc: BaseException) -> str:
    """All a Python user could see of an exception: message, repr, the whole traceback."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + repr(exc)


@pytest.fixture(autouse=True)
def no_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*KEY_ENV, "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "COHERE_BASE_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VOYAGE_BASE_URL", raising=False)


@pytest.fixture(scope="module")
def module_server():
    with EmbeddingsServer(required_key=ACCEPTED) as server:
        yield server


@pytest.fixture(params=["json", "text"])
def server(request: pytest.FixtureRequest, module_server: EmbeddingsServer) -> EmbeddingsServer:
    module_server.reset()
    module_server.state.echo_headers = request.param
    module_server.state.required_key = ACCEPTED
    return module_server


def embedder(server: EmbeddingsServer, provider: str, *, via_env: bool, monkeypatch, **kw):
    spec, path, env = PROVIDERS[provider]
    if via_env:
        monkeypatch.setenv(env, SECRET)
    else:
        kw["api_key"] = SECRET
    return get_embedder(spec, base_url=server.url + path, dim=32, backoff_base=0.01, **kw)


def assert_key_was_sent(server: EmbeddingsServer) -> None:
    """The key really went out (so the server really echoed it): the test can fail."""
    assert any(SECRET in " ".join(r.headers.values()) for r in server.requests)


# -- every provider, in Python ----------------------------------------------------------------


@pytest.mark.parametrize("via_env", [False, True], ids=["argument", "environment"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_rejected_key_echoed_by_the_server_is_masked(server, provider, via_env, monkeypatch):
    emb = embedder(server, provider, via_env=via_env, monkeypatch=monkeypatch)
    with pytest.raises(EmbedderError) as info:
        emb.embed_documents(["hello world"])
    assert_key_was_sent(server)
    shown = full_text(info.value)
    assert "HTTP 401" in str(info.value) and MASK in str(info.value)
    assert not leaks(shown), shown
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_retried_errors_and_log_lines_are_masked(server, provider, monkeypatch, caplog):
    server.state.required_key = None  # the key passes; the errors still echo it
    server.script(["500", "429", "500"])
    emb = embedder(server, provider, via_env=False, monkeypatch=monkeypatch, max_retries=2)
    with caplog.at_level(logging.DEBUG, logger="queryfit.http"):
        with pytest.raises(EmbedderError, match="failed after 3 tries: HTTP 500") as info:
            emb.embed_documents(["hello world"])
    assert_key_was_sent(server)
    assert MASK in str(info.value) and not leaks(full_text(info.value))
    assert len(caplog.records) == 2 and MASK in caplog.text and not leaks(caplog.text)


def test_litellm_errors_are_masked(server, monkeypatch):
    """LiteLLM (stood in for by a module that calls the echoing server the way it would):
    its exception text carries the server's answer, key included, whether the key was given
    to queryfit or read by LiteLLM from the environment."""

    class AuthenticationError(Exception):
        pass

    def embedding(*, model, input, api_key=None, api_base=None, **_):
        key = api_key or os.environ.get("MISTRAL_API_KEY", "")
        url = f"{api_base}/v1/embeddings"
        r = httpx.post(url, json={"model": model, "input": input}, headers={"api-key": key})
        if r.status_code >= 400:
            raise AuthenticationError(f"litellm.AuthenticationError: MistralException - {r.text}")
        return r.json()

    monkeypatch.setitem(sys.modules, "litellm", types.SimpleNamespace(embedding=embedding))
    given = get_embedder("litellm:mistral/toy", base_url=server.url, dim=32, api_key=SECRET)
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    from_env = get_embedder("litellm:mistral/toy", base_url=server.url, dim=32)
    for emb in (given, from_env):
        server.reset()
        with pytest.raises(EmbedderError, match="AuthenticationError") as info:
            emb.embed_documents(["hello world"])
        assert_key_was_sent(server)
        assert MASK in str(info.value) and not leaks(full_text(info.value))
    # With the right key, it works: the stand-in really speaks to the server.
    ok = get_embedder("litellm:mistral/toy", base_url=server.url, dim=32, api_key=ACCEPTED)
    np.testing.assert_allclose(ok.embed_documents(["a b"])[0], toy_vector("a b"), atol=1e-5)


# -- the LLM client ---------------------------------------------------------------------------


@pytest.mark.parametrize("echo", ["json", "text"])
@pytest.mark.parametrize("via_env", [False, True], ids=["argument", "environment"])
def test_llm_client_masks_the_key_on_every_path(echo, via_env, monkeypatch, caplog):
    if via_env:
        monkeypatch.setenv("QUERYFIT_LLM_API_KEY", SECRET)
    key = None if via_env else SECRET
    with ChatServer(echo_headers=echo, retry_after=0) as srv:
        client = ChatClient("m", base_url=srv.base_url, api_key=key, backoff_base=0.01)
        messages = [{"role": "user", "content": "Write 2 questions"}]
        srv.script(["401"])
        with pytest.raises(GenerationError, match="HTTP 401") as info:
            client.complete(messages)
        assert MASK in str(info.value) and not leaks(full_text(info.value))

        srv.script(["500", "429", "500"])  # retried, then given up: a per-passage failure
        client = ChatClient(
            "m", base_url=srv.base_url, api_key=key, max_retries=2, backoff_base=0.01
        )
        waits: list[str] = []
        with caplog.at_level(logging.DEBUG, logger="queryfit.http"):
            with pytest.raises(RequestFailed) as failed:
                client.complete(messages, on_wait=lambda reason, s: waits.append(reason))
        assert failed.value.reason == "HTTP 500" and MASK in failed.value.detail
        assert not leaks(full_text(failed.value) + " ".join(waits) + caplog.text)
        assert all(SECRET in r.headers["Authorization"] for r in srv.requests)


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    corpus = {f"d{i}": f"passage {i} on subject {i % 3}" for i in range(6)}
    queries = {f"q{i}": f"what about subject {i % 3}" for i in range(3)}
    dataset = QADataset(queries, corpus, {f"q{i}": [f"d{i}"] for i in range(3)})
    save_dataset(dataset, tmp_path / "d.json")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"doc{i}.txt").write_text(f"Document {i} explains the calcination process {i}.")
    return tmp_path


def no_file_holds_the_key(folder: Path) -> None:
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert written  # the store (at least) was created
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def cli(*args: str, cwd: Path, **env: str) -> Result:
    """The real CLI app in process (cheap), the environment cleaned of keys."""
    from queryfit.cli import app

    clean = {k: None for k in os.environ if k.endswith("_API_KEY")}
    full = clean | {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")} | env
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), env=full, catch_exceptions=False)
    finally:
        os.chdir(previous)


def assert_one_masked_line(stdout: str, stderr: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and MASK in errors[0], stderr
    assert not leaks(stdout + stderr) and "Traceback" not in stderr


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_cli_embed_masks_the_key_for_every_provider(server, provider, workdir):
    spec, path, env = PROVIDERS[provider]
    args = ["embed", "--data", "d.json", "--model", spec, "--base-url", server.url + path]
    by_flag = cli(*args, "--api-key", SECRET, cwd=workdir)
    by_env = cli(*args, cwd=workdir, **{env: SECRET})
    for result in (by_flag, by_env):
        assert result.exit_code == 2
        assert_one_masked_line(result.stdout, result.stderr)
    assert_key_was_sent(server)
    no_file_holds_the_key(workdir)


def test_cli_generate_masks_the_key_and_writes_it_nowhere(workdir):
    with ChatServer(echo_headers="json") as srv:
        generate = ["generate", "--docs", "docs", "--llm", "openai:m", "--base-url", srv.base_url]
        generate += ["--out", "pairs.json", "--journal", "journal.jsonl", "--concurrency", "1"]
        srv.script(["401"])
        refused = cli(*generate, "--api-key", SECRET, cwd=workdir)
        assert refused.exit_code == 2
        assert_one_masked_line(refused.stdout, refused.stderr)
        # A run that goes through (a retried 500 on the way) writes the key nowhere either.
        srv.script(["500"])
        done = cli(*generate, "--json", cwd=workdir, QUERYFIT_LLM_API_KEY=SECRET)
        assert done.exit_code == 0, done.stderr
        assert not leaks(done.stdout + done.stderr)
        assert all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in srv.requests)
    assert (workdir / "journal.jsonl").exists() and (workdir / "pairs.json").exists()
    no_file_holds_the_key(workdir)


def subprocess_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m queryfit ...`` in a fresh process, as a user runs it."""
    full = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full |= {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")} | env
    command = [sys.executable, "-m", "queryfit", *args]
    return subprocess.run(command, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def test_cli_processes_never_print_or_write_the_key(workdir):
    """The real command in its own process: embed (key by flag), generate (key by env)."""
    with EmbeddingsServer(required_key=ACCEPTED, echo_headers="text") as server:
        embed = ["embed", "--data", "d.json", "--model", "openai:toy"]
        embed += ["--base-url", f"{server.url}/v1", "--api-key", SECRET]
        embedded = subprocess_cli(*embed, cwd=workdir)
        assert_key_was_sent(server)
    with ChatServer(echo_headers="text") as srv:
        srv.script(["401"])
        generate = ["generate", "--docs", "docs", "--llm", "openai:m", "--base-url", srv.base_url]
        generate += ["--out", "pairs.json", "--concurrency", "1"]
        generated = subprocess_cli(*generate, cwd=workdir, QUERYFIT_LLM_API_KEY=SECRET)
        assert srv.requests and srv.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    for done in (embedded, generated):
        assert done.returncode == 2
        assert_one_masked_line(done.stdout, done.stderr)
    no_file_holds_the_key(workdir)
