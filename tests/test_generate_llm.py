"""Generation against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server (tests/servers/chat_server.py) is scripted to answer well, with junk, with 429 and
Retry-After, with 500, and to hang; the tests check retries, parsing, filters, failure reports,
that the API key is sent but never written, and resume after a ``kill -9`` mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers.chat_server import ChatServer, questions_for

from queryfit.errors import GenerationError
from queryfit.generation import ChatClient, RequestFailed, generate, generate_pairs, get_generator
from queryfit.generation.documents import Document, chunk_documents

KEY = "sk-test-SECRET-0123456789"


def passages(n: int = 6):
    texts = [
        f"Document {i} explains the {w} process. Engineers at site {i} measure {w} rates daily. "
        f"Each {w} sample is stored in vault {i * 11} for later review."
        for i, w in enumerate(
            [
                "calcination", "fermentation", "oxidation", "distillation", "sublimation",
                "filtration", "hydrolysis", "pasteurization", "crystallization", "electrolysis",
                "condensation", "evaporation", "polymerization", "combustion", "nitrification",
                "saponification", "vulcanization", "galvanization", "annealing", "tempering",
                "smelting", "refining", "leaching", "roasting", "flotation", "sintering",
                "quenching", "forging", "casting", "rolling", "extrusion", "drawing",
                "pressing", "stamping", "welding", "brazing", "soldering", "riveting",
                "grinding", "polishing",
            ][:n]
        )
    ]  # fmt: skip
    return chunk_documents([Document(f"doc{i}.txt", t) for i, t in enumerate(texts)])


def chat(server: ChatServer, **kwargs) -> object:
    options = {"api_key": KEY, "timeout": 5.0, "max_retries": 3, "backoff_base": 0.01}
    return get_generator("openai:test-model", base_url=server.base_url, **(options | kwargs))


@pytest.fixture
def server():
    with ChatServer() as srv:
        yield srv


def test_good_answers_become_pairs_and_the_key_stays_in_the_header(server, tmp_path):
    items = passages(4)
    report = generate_pairs(items, chat(server), journal=tmp_path / "j.jsonl", progress=False)
    assert report.stats.generated == 4 and report.stats.requests == 4 and not report.stats.failed
    assert sorted(report.dataset.queries.values()) == sorted(
        q for p in items for q in questions_for(p.text, 2)
    )
    first = server.requests[0]
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.body["model"] == "test-model" and first.body["messages"][0]["role"] == "system"
    sent = [r.body["messages"][-1]["content"] for r in server.requests]
    assert all(any(p.text in m for m in sent) for p in items)
    assert KEY not in (tmp_path / "j.jsonl").read_text()
    assert KEY not in repr(report.to_dict()) and KEY not in repr(chat(server))


def test_junk_429_500_and_a_hang_are_retried_then_parsed(server, tmp_path):
    server.retry_after = 1
    server.hang_seconds = 3
    server.script(["junk", "429", "500", "json", "hang", "ok", "empty", "ok"])
    start = time.perf_counter()
    gen = chat(server, timeout=0.5, concurrency=1)
    report = generate_pairs(passages(4), gen, journal=tmp_path / "j.jsonl", progress=False)
    took = time.perf_counter() - start
    stats = report.stats
    assert stats.generated == 4 and stats.failed == 0 and len(report.dataset.queries) == 8
    assert stats.requests == 9 and stats.retries == 5 and stats.rate_limited == 1
    assert stats.waited_seconds >= 1.0 and took >= 1.0  # Retry-After: 1 was honoured
    assert took < 2.9  # the hung request was cut by the 0.5 s timeout, not waited out


def test_retry_after_is_read_from_the_header_and_reported_to_the_progress_hook(server):
    server.retry_after = 0.3
    server.script(["429", "429"])
    client = ChatClient("m", base_url=server.base_url, backoff_base=5.0)
    waits = []
    text = client.complete(
        [{"role": "user", "content": "Write 2 x"}], on_wait=lambda r, s: waits.append((r, s))
    )
    assert "1. " in text
    assert waits == [("rate limited (HTTP 429)", 0.3), ("rate limited (HTTP 429)", 0.3)]
    assert client.stats.rate_limited == 2 and client.stats.retries == 2


def test_failures_are_summarised_not_recorded_and_retried_on_rerun(server, tmp_path):
    server.script(["500"] * 2 + ["junk"] * 2)  # passage 1: 500 twice; passage 2: junk twice
    items = passages(4)
    gen = chat(server, max_retries=1, concurrency=1)
    journal = tmp_path / "j.jsonl"
    first = generate_pairs(items, gen, journal=journal, progress=False)
    assert first.stats.failed == 2 and first.stats.generated == 2
    assert first.stats.failures == {"HTTP 500": 1, "unparseable answer": 1}
    assert len(first.dataset.queries) == 4 and len(first.dataset.corpus) == 4
    before = len(server.requests)
    second = generate_pairs(items, chat(server), journal=journal, progress=False)
    assert second.stats.from_journal == 2 and second.stats.generated == 2
    assert len(server.requests) - before == 2  # only the two failed passages were asked again
    assert len(second.dataset.queries) == 8


def test_what_retrying_cannot_fix_stops_at_once(server, tmp_path):
    server.script(["401"])
    gen = chat(server, concurrency=1)
    with pytest.raises(GenerationError, match=r"refused the request \(HTTP 401.*--api-key") as err:
        generate_pairs(passages(3), gen, journal=tmp_path / "a.jsonl", progress=False)
    assert "provided: ***" in str(err.value) and KEY not in str(err.value)
    assert len(server.requests) <= 2  # the 401 was not retried
    # Two 404s: the first run's second passage may still be in flight and take one.
    server.script(["404", "404"])
    with pytest.raises(GenerationError, match="HTTP 404.*--base-url"):
        generate_pairs(passages(3), gen, journal=tmp_path / "b.jsonl", progress=False)
    assert len(server.requests) <= 4


def test_closing_the_client_stops_retries_in_flight(server):
    server.retry_after = 30  # a long Retry-After wait, cut short by close()
    server.script(["429"])
    client = ChatClient("m", base_url=server.base_url)
    result = {}

    def call():
        try:
            client.complete([{"role": "user", "content": "Write 2 x"}])
        except RequestFailed as exc:
            result["reason"] = exc.reason

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.3)
    started = time.perf_counter()
    client.close()
    worker.join(timeout=5)
    assert result == {"reason": "cancelled"} and time.perf_counter() - started < 1
    assert "1. " in client.complete([{"role": "user", "content": "Write 2 x"}])  # still usable


def test_an_endpoint_that_never_answers_fails_fast(tmp_path):
    with ChatServer() as srv:
        url = srv.base_url
    gen = get_generator("openai:m", base_url=url, max_retries=0, concurrency=2)
    with pytest.raises(GenerationError, match="first 8 passages all failed.*connection failed"):
        generate_pairs(passages(12), gen, journal=tmp_path / "j.jsonl", progress=False)


def test_concurrency_runs_requests_in_parallel(tmp_path):
    with ChatServer(latency=0.2) as srv:
        items = passages(16)
        start = time.perf_counter()
        report = generate_pairs(
            items, chat(srv, concurrency=8), journal=tmp_path / "j.jsonl", progress=False
        )
        took = time.perf_counter() - start
    assert report.stats.generated == 16
    assert srv.max_in_flight >= 6
    assert took < 16 * 0.2 / 2  # at least twice as fast as one at a time


# --------------------------------------------------------------------------------------------
# Resume after kill -9 and the CLI
# --------------------------------------------------------------------------------------------


def write_docs(folder: Path, n: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(passages(n)):
        (folder / f"doc{i:02d}.txt").write_text(p.text)
    return folder


def cli(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "QUERYFIT_STORE": str(cwd / "store.sqlite")}
    env.pop("OPENAI_API_KEY", None)
    env["QUERYFIT_LLM_API_KEY"] = KEY
    return subprocess.Popen(
        [sys.executable, "-m", "queryfit", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    write_docs(tmp_path / "docs", 30)
    with ChatServer(latency=0.15) as srv:
        args = ["generate", "--docs", "docs", "--llm", "openai:m", "--llm-base-url", srv.base_url]
        args += ["--concurrency", "2", "--quiet", "--journal", "journal.jsonl"]
        proc = cli(*args, "--out", "pairs.json", cwd=tmp_path)
        journal = tmp_path / "journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until some, not all, passages are done
            if journal.exists() and journal.read_text().count("\n") >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        assert not (tmp_path / "pairs.json").exists()
        done_before = journal.read_text().count("\n") - 1  # minus the header line
        assert 0 < done_before < 30
        asked_before = len(srv.requests)

        rerun = cli(*args, "--out", "pairs.json", "--json", cwd=tmp_path)
        stdout, stderr = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, stderr
        report = json.loads(stdout)
        gen = report["generation"]
        assert gen["from_journal"] == done_before and gen["generated"] == 30 - done_before
        # At most the requests in flight at the kill were asked twice; nothing else was.
        assert len(srv.requests) - asked_before == 30 - done_before
        assert asked_before <= done_before + 2

        rows = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
        ids = [row["passage"] for row in rows]
        assert len(ids) == len(set(ids)) == 30  # every passage once: none lost, none twice
        assert KEY not in journal.read_text() and KEY not in stdout + stderr

        # The same pairs as a run that was never interrupted.
        generate(
            tmp_path / "docs",
            out=tmp_path / "clean.json",
            llm="openai:m",
            llm_base_url=srv.base_url,
            llm_api_key=KEY,
            journal=tmp_path / "clean.jsonl",
            progress=False,
        )
    resumed = json.loads((tmp_path / "pairs.json").read_text())
    assert resumed == json.loads((tmp_path / "clean.json").read_text())
    assert len(resumed["queries"]) == 60 and len(resumed["corpus"]) == 30


def test_cli_shows_failures_and_rejected_keys_as_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from queryfit.cli import app

    write_docs(tmp_path / "docs", 3)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUERYFIT_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.setenv("QUERYFIT_LLM_API_KEY", KEY)
    with ChatServer() as srv:
        srv.script(["500"] * 2)  # the first passage fails both its tries
        base = ["generate", "--docs", "docs", "--llm", "openai:m", "--llm-base-url", srv.base_url]
        args = [*base, "--out", "p.json", "--max-retries", "1", "--concurrency", "1"]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        assert "1 failed" in done.stdout and "2 passages asked" in done.stdout
        assert "1 passages got no questions (HTTP 500 x1); rerun" in done.stderr
        assert "1 retries, last: HTTP 500" in done.stderr  # shown by the progress bar
        srv.script(["401"])
        done = CliRunner().invoke(app, [*base, "--out", "q.json", "--journal", "other.jsonl"])
    assert done.exit_code == 2
    line = done.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error:") and "HTTP 401" in line
    assert KEY not in done.stderr + done.stdout


def test_request_failed_carries_a_groupable_reason():
    failure = RequestFailed("HTTP 500", "internal error")
    assert failure.reason == "HTTP 500" and str(failure) == "HTTP 500: internal error"
