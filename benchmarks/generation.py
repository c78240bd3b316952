"""Generation throughput: pairs per minute against a local OpenAI-compatible server at
concurrency 1 and 8 (the same run), the offline heuristic generator, and optionally SmolLM2.

The server (tests/servers/chat_server.py) sleeps ``--latency`` seconds per answer to stand in for
a model's generation time, so the concurrency ratio measures queryfit's request pipeline, not a
model. Passages are the Python reference topics (``pydoc_data``), chunked for the bundled MiniLM.

    python benchmarks/generation.py                    # server at concurrency 1 and 8, heuristic
    python benchmarks/generation.py --smollm2 8        # also SmolLM2 on 8 passages (slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.chat_server import ChatServer  # noqa: E402

from queryfit.cli.demo import pydoc_passages  # noqa: E402
from queryfit.embedders import get_embedder  # noqa: E402
from queryfit.generation import generate_pairs, get_generator  # noqa: E402
from queryfit.generation.documents import Document, chunk_documents, token_counter_for  # noqa: E402


def passages():
    from pydoc_data.topics import topics

    counter = token_counter_for(get_embedder(None))
    docs = [Document(name, text) for name, text in sorted(topics.items())]
    return chunk_documents(docs, counter=counter)


def timed(items, generator, workdir: Path, name: str, concurrency: int | None = None) -> dict:
    start = time.perf_counter()
    report = generate_pairs(
        items,
        generator,
        concurrency=concurrency,
        journal=workdir / f"{name}.jsonl",
        progress=False,
    )
    seconds = time.perf_counter() - start  # generation, filters and assembly: what a user waits
    return {
        "passages": len(items),
        "pairs": report.pairs,
        "seconds": round(seconds, 2),
        "pairs_per_minute": round(60 * report.pairs / seconds, 1),
        "requests": report.stats.requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=48, help="passages for the server runs")
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per answer")
    parser.add_argument("--smollm2", type=int, default=0, help="passages for SmolLM2 (0: skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    python = platform.python_version()
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {python}",
        "server_latency_s": args.latency,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        everything = passages()  # chunked once: the server runs take the first ones
        items = everything[: args.passages] if args.passages else everything
        with ChatServer(latency=args.latency) as server:
            for concurrency in (1, 8):
                gen = get_generator(
                    "openai:bench", base_url=server.base_url, concurrency=concurrency
                )
                results[f"server_concurrency_{concurrency}"] = timed(
                    items, gen, work, f"c{concurrency}", concurrency
                )
        one, eight = results["server_concurrency_1"], results["server_concurrency_8"]
        results["speedup_8_vs_1"] = round(eight["pairs_per_minute"] / one["pairs_per_minute"], 2)
        results["heuristic"] = timed(everything, "heuristic", work, "heuristic")
        results["pydoc_passages"] = len(pydoc_passages())
        if args.smollm2:
            results["smollm2"] = timed(everything[: args.smollm2], "smollm2", work, "smollm2")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {results['machine']}")
    print(f"local OpenAI-compatible server, {args.latency:g} s per answer, {len(items)} passages:")
    for c in (1, 8):
        r = results[f"server_concurrency_{c}"]
        print(
            f"  concurrency {c}: {r['pairs']} pairs in {r['seconds']} s = "
            f"{r['pairs_per_minute']:,.0f} pairs/min"
        )
    print(f"  concurrency 8 vs 1: {results['speedup_8_vs_1']}x")
    h = results["heuristic"]
    print(
        f"heuristic (offline, no model): {h['pairs']} pairs from {h['passages']} passages in "
        f"{h['seconds']} s = {h['pairs_per_minute']:,.0f} pairs/min"
    )
    if "smollm2" in results:
        s = results["smollm2"]
        print(
            f"smollm2 (offline, CPU): {s['pairs']} pairs from {s['passages']} passages in "
            f"{s['seconds']} s = {s['pairs_per_minute']:,.1f} pairs/min"
        )


if __name__ == "__main__":
    main()
