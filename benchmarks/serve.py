"""Load on `queryfit serve` over loopback: requests/s and latency at concurrency 1 and 16.

One text per request (a retrieval query), a fixed number of requests per row, so the run stops by
itself. Rows, all from one run on the same machine:

* the base model called directly in-process (queryfit's sentence-transformers embedder, one call
  per query; at concurrency 16, 16 threads calling it at once): what the model costs without
  HTTP or the adapter;
* `queryfit serve` (a subprocess on 127.0.0.1, the bundled all-MiniLM-L6-v2 with a linear
  adapter) with micro-batching, driven by an asyncio httpx client sending what the openai client
  sends (base64 vectors);
* the same server with micro-batching off (`--max-batch 1`) at concurrency 16, the control;
* the model alone at batch 1 and batch 16 (CPU ms per text): the most any batching can gain on
  this CPU;
* with `--upstream-latency-ms` (default 20): the same comparison in front of an API, the toy
  OpenAI-compatible server of the tests answering after that delay (the provider called
  in-process vs `queryfit serve --base-url`).

Queries are the seed-10k questions when ../shared/data/seed-10k is there, else synthetic ones.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve.py [--requests 400] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.embeddings_server import EmbeddingsServer  # noqa: E402

from queryfit.adapters import Adapter, save_adapter  # noqa: E402
from queryfit.embedders import get_embedder  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-10k"
MODEL = "sentence-transformers:all-MiniLM-L6-v2"
NAME = "bench"


def queries(n: int) -> tuple[list[str], str]:
    """``n`` questions (repeating if needed) and where they came from."""
    path = DATA / "lyft_train.json"
    if path.is_file():
        found = list(json.loads(path.read_text(encoding="utf-8"))["queries"].values())
        source = f"{len(found)} seed-10k questions ({path.name})"
    else:
        topics = ["refunds", "shipping", "passwords", "invoices", "accounts", "returns"]
        found = [f"how are {topics[i % 6]} handled for order {i}?" for i in range(97)]
        source = "97 synthetic questions (seed-10k absent)"
    return [found[i % len(found)] for i in range(n)], source


def make_adapter(folder: Path, model: str = MODEL, dim: int = 384) -> Path:
    """A linear adapter near the identity: speed does not depend on what it learned."""
    rng = np.random.default_rng(0)
    weight = np.eye(dim, dtype=np.float32) + 0.05 * rng.normal(size=(dim, dim)).astype(np.float32)
    adapter = Adapter(type="linear", params={"weight": weight}, dim=dim, base_model={"id": model})
    save_adapter(adapter, folder)
    return folder


def summary(label: str, concurrency: int, latencies: list[float], seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    return {
        "mode": label,
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


# -- the base model in-process -------------------------------------------------------------------


def in_process(label: str, embed, texts: list[str], concurrency: int, warmup: list[str]) -> dict:
    """``embed([text])`` for each text, from ``concurrency`` threads at once."""
    for text in warmup:
        embed([text])
    latencies: list[float] = []
    lock = threading.Lock()
    todo = iter(texts)

    def worker() -> None:
        while True:
            with lock:
                text = next(todo, None)
            if text is None:
                return
            start = time.perf_counter()
            embed([text])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(label, concurrency, latencies, time.perf_counter() - start)


def batching_ceiling(embed, texts: list[str], batch: int, total: int = 128) -> float:
    """CPU milliseconds per text when the model embeds ``total`` texts, ``batch`` per call."""
    rounds = total // batch
    calls = [[texts[(i * batch + j) % len(texts)] for j in range(batch)] for i in range(rounds)]
    start = time.process_time()
    for call in calls:
        embed(call)
    return (time.process_time() - start) * 1000 / (rounds * batch)


# -- the server ----------------------------------------------------------------------------------


class Server:
    """``python -m queryfit serve`` on 127.0.0.1, any free port; SIGTERM on exit."""

    def __init__(self, adapter: Path, *extra: str) -> None:
        args = [sys.executable, "-m", "queryfit", "serve", "--adapter", str(adapter)]
        args += ["--name", NAME, "--port", "0", "--json", *extra]
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    def __enter__(self) -> Server:
        lines = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        if not lines or not lines[-1].startswith("}"):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise SystemExit(f"the server did not start: {err.strip() or ''.join(lines)}")
        self.url = json.loads("".join(lines))["url"]
        return self

    def health(self) -> dict:
        return httpx.get(self.url.removesuffix("/v1") + "/health", timeout=30).json()

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _load(url: str, texts: list[str], concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    todo = iter(texts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for text in todo:  # one shared iterator: each text is sent once
                body = {"model": NAME, "input": [text], "encoding_format": "base64"}
                start = time.perf_counter()
                response = await client.post("/embeddings", json=body)
                latencies.append(time.perf_counter() - start)
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - start


def over_http(
    server: Server, label: str, texts: list[str], concurrency: int, warmup: list[str]
) -> dict:
    asyncio.run(_load(server.url, warmup, concurrency))
    before = server.health()
    latencies, seconds = asyncio.run(_load(server.url, texts, concurrency))
    after = server.health()
    row = summary(label, concurrency, latencies, seconds)
    calls = after["model_calls"] - before["model_calls"]
    row["per_call"] = (after["texts"] - before["texts"]) / max(calls, 1)
    return row


def print_rows(rows: list[dict]) -> None:
    print("| mode | concurrency | requests | requests/s | p50 ms | p99 ms | texts per model call |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        per_call = f"{r['per_call']:.1f}" if "per_call" in r else "1 (no batching)"
        print(
            f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['rps']:,.0f} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {per_call} |"
        )


def ratios(direct1: dict, direct16: dict, serve1: dict, serve16: dict) -> None:
    print(
        f"\nmicro-batching, concurrency 16 vs 1: {serve16['rps'] / serve1['rps']:.1f}x "
        "requests/s (goal >= 3x)"
        f"\nserver vs in-process at concurrency 1: {serve1['rps'] / direct1['rps']:.2f}x "
        f"requests/s, p50 {serve1['p50'] - direct1['p50']:+.1f} ms (HTTP + JSON + adapter)"
        f"\nserver vs in-process at concurrency 16: {serve16['rps'] / direct16['rps']:.1f}x "
        "requests/s\n"
    )


def local_model(args: argparse.Namespace, texts: list[str], warm: list[str], tmp: Path) -> None:
    base = get_embedder(MODEL)
    rows = [
        in_process("base model in-process", base.embed_queries, texts, c, warm) for c in (1, 16)
    ]
    adapter = make_adapter(tmp / NAME)
    batching = ("--max-batch", args.max_batch, "--max-wait-ms", args.max_wait_ms)
    with Server(adapter, *batching) as server:
        for c in (1, 16):
            rows.append(over_http(server, "queryfit serve", texts, c, warm))
    with Server(adapter, "--max-batch", "1", "--max-wait-ms", "0") as server:
        rows.append(over_http(server, "queryfit serve, --max-batch 1", texts, 16, warm))
    print_rows(rows)
    ratios(*rows[:4])
    print(f"micro-batching on vs off at concurrency 16: {rows[3]['rps'] / rows[4]['rps']:.1f}x")
    one, sixteen = (batching_ceiling(base.embed_queries, texts, b) for b in (1, 16))
    print(
        f"the model alone: {one:.1f} CPU ms per text at batch 1, {sixteen:.1f} at batch 16: "
        f"batching saves at most {one / sixteen:.1f}x of the model's work on this CPU\n"
    )


def api_model(args: argparse.Namespace, texts: list[str], warm: list[str], tmp: Path) -> None:
    latency = args.upstream_latency_ms
    with EmbeddingsServer(latency=latency / 1000) as toy:
        base_url = toy.url + "/v1"
        direct = get_embedder("openai:toy", base_url=base_url, dim=32, max_retries=0)
        label = "openai:toy provider in-process"
        rows = [in_process(label, direct.embed_queries, texts, c, warm) for c in (1, 16)]
        adapter = make_adapter(tmp / "toy", "openai:toy", 32)
        batching = ("--max-batch", args.max_batch, "--max-wait-ms", args.max_wait_ms)
        with Server(adapter, "--base-url", base_url, *batching) as server:
            for c in (1, 16):
                rows.append(over_http(server, "queryfit serve --base-url", texts, c, warm))
    print(f"In front of an API: the toy upstream answering after {latency:g} ms per call\n")
    print_rows(rows)
    ratios(*rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per row")
    parser.add_argument("--warmup", type=int, default=32, help="requests before each row")
    parser.add_argument("--max-wait-ms", default="2", help="the server's --max-wait-ms")
    parser.add_argument("--max-batch", default="64", help="the server's --max-batch")
    parser.add_argument(
        "--upstream-latency-ms", type=float, default=20.0, help="0 skips the API rows"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for the in-process model and the server alike [default: torch's]",
    )
    args = parser.parse_args()
    if args.torch_threads is not None:  # set before torch is imported here or in the server
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    # What `queryfit serve` sets for itself; the in-process rows get the same, to compare alike.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    threads = os.environ.get("OMP_NUM_THREADS", "torch's default")
    texts, source = queries(args.requests + args.warmup)
    warm, timed = texts[: args.warmup], texts[args.warmup :]
    print(
        f"{args.requests} requests per row, one query per request, {source}; server: "
        f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}; "
        f"{os.cpu_count()} CPUs, torch threads: {threads}, OMP_WAIT_POLICY="
        f"{os.environ['OMP_WAIT_POLICY']}\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        local_model(args, timed, warm, Path(tmp))
        if args.upstream_latency_ms > 0:
            api_model(args, timed, warm, Path(tmp))


if __name__ == "__main__":
    main()
