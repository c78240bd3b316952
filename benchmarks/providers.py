"""Throughput of the OpenAI-compatible provider against the local test server, and a rerun.

Measures texts/s with one text per request (batch 1, one request at a time) against the provider's
defaults (batched requests, several in flight), in the same run and against the same server, with
and without a simulated network round trip; then embeds a dataset twice into one store file and
counts the HTTP requests of the second run (expected: zero).

    .venv/bin/python benchmarks/providers.py [--texts 2000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.embeddings_server import EmbeddingsServer  # noqa: E402

from queryfit.data import QADataset  # noqa: E402
from queryfit.embedders import get_embedder  # noqa: E402
from queryfit.store import EmbeddingStore  # noqa: E402


def corpus(n: int) -> list[str]:
    return [
        f"passage {i} on subject {i % 97} with details {i * 7 % 1009} and more" for i in range(n)
    ]


def throughput(server: EmbeddingsServer, texts: list[str], **options) -> tuple[float, int]:
    emb = get_embedder("openai:toy", base_url=f"{server.url}/v1", dim=32, **options)
    store = EmbeddingStore(":memory:")
    server.reset()
    start = time.perf_counter()
    store.embed(emb, texts, "document", progress=False)
    seconds = time.perf_counter() - start
    return len(texts) / seconds, len(server.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--batch1-texts", type=int, default=500, help="texts for the (slow) batch-1 runs"
    )
    args = parser.parse_args()
    texts = corpus(args.texts)
    print(
        f"OpenAI-compatible provider, local server on 127.0.0.1: {args.texts} texts batched, "
        f"the first {args.batch1_texts} of them at batch 1\n"
    )
    print("| server latency | batch 1 (texts/s, requests) | default (texts/s, requests) | ratio |")
    print("|---|---|---|---|")
    with EmbeddingsServer() as server:
        defaults = get_embedder("openai:toy", base_url=f"{server.url}/v1", dim=32)
        for latency in (0.0, args.latency_ms / 1000):
            server.state.latency = latency
            one, n_one = throughput(server, texts[: args.batch1_texts], batch_size=1, concurrency=1)
            many, n_many = throughput(server, texts)
            print(
                f"| {latency * 1000:.0f} ms | {one:,.0f} ({n_one}) | {many:,.0f} ({n_many}) "
                f"| {many / one:.1f}x |"
            )
        print(f"\ndefaults: batch_size={defaults.batch_size}, concurrency={defaults.concurrency}")

        server.state.latency = 0.0
        queries = {f"q{i}": f"what about subject {i % 97}?" for i in range(200)}
        docs = {f"d{i}": t for i, t in enumerate(texts)}
        data = QADataset(queries, docs, {f"q{i}": [f"d{i}"] for i in range(200)})
        from queryfit import api

        with tempfile.TemporaryDirectory() as tmp:
            for run in ("first", "second"):
                server.reset()
                emb = get_embedder("openai:toy", base_url=f"{server.url}/v1", dim=32)
                start = time.perf_counter()
                report = api.embed(data, model=emb, store=Path(tmp) / "s.sqlite", progress=False)
                print(
                    f"{run} run: {len(server.requests)} HTTP requests, "
                    f"{report.texts_embedded} texts embedded, {report.texts_from_store} from the "
                    f"store, {time.perf_counter() - start:.2f}s"
                )


if __name__ == "__main__":
    main()
