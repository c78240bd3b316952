"""What the Ray backend of `queryfit embed` costs and gives, against the local backend.

Embeds the same passages into two fresh stores, locally and on a local Ray instance (an actor
pool of ``--workers``), and prints seconds and texts/s for each, Ray's start-up (``ray.init``)
apart, and whether the two stores hold the same vectors. ``--model toy`` is the test suite's HTTP
embeddings server (``--latency-ms`` per request mimics a remote model: the pool multiplies the
requests in flight); ``--model minilm`` is the bundled all-MiniLM-L6-v2 (CPU-bound: the pool
multiplies the cores used, so it only pays on a machine with cores to spare).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ray_backend.py [--texts 20000] [--workers 2]
        [--model toy|minilm] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers.embeddings_server import EmbeddingsServer  # noqa: E402

from queryfit import api  # noqa: E402
from queryfit.data import QADataset  # noqa: E402
from queryfit.distributed import RayBackend  # noqa: E402
from queryfit.embedders import get_embedder  # noqa: E402
from queryfit.store import EmbeddingStore  # noqa: E402
from queryfit.vectors import embed_dataset  # noqa: E402


def dataset(n: int) -> QADataset:
    corpus = {
        f"d{i}": f"passage {i} on subject {i % 97} with details {i * 7 % 1009}" for i in range(n)
    }
    queries = {
        f"q{i}": f"what about subject {i % 97} detail {i * 7 % 1009}" for i in range(n // 10)
    }
    return QADataset(queries, corpus, {q: [f"d{q[1:]}"] for q in queries})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=20_000, help="passages (plus 10%% queries)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", choices=("toy", "minilm"), default="toy")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="toy server, per request")
    args = parser.parse_args()

    import ray

    data = dataset(args.texts)
    n_texts = len(data.corpus) + len(data.queries)
    with (
        EmbeddingsServer(latency=args.latency_ms / 1000) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        if args.model == "toy":
            model, options = "openai:toy", {"base_url": f"{server.url}/v1", "dim": 32}
        else:
            model, options = None, {}
        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level=logging.WARNING)
        init_s = time.perf_counter() - start
        rows = []
        for backend in ("local", RayBackend(workers=args.workers)):
            path = Path(tmp) / f"{'local' if backend == 'local' else 'ray'}.sqlite"
            with EmbeddingStore(path) as store:
                start = time.perf_counter()
                report = api.embed(
                    data, model=model, model_options=options, store=store, backend=backend,
                    progress=False,
                )  # fmt: skip
                seconds = time.perf_counter() - start
            rows.append(
                (backend if backend == "local" else f"ray x{args.workers}", seconds, report)
            )
        ray.shutdown()
        embedder = get_embedder(model, **options)
        vectors = []
        for name in ("local", "ray"):
            with EmbeddingStore(Path(tmp) / f"{name}.sqlite") as store:
                v = embed_dataset(data, embedder, store, progress=False)
                assert store.stats.model_calls == 0
                vectors.append(np.concatenate([v.docs, v.queries]))
        gap = float(np.abs(vectors[0] - vectors[1]).max())

    print(f"{n_texts} texts, model {args.model}, ray.init {init_s:.1f} s (not counted below)")
    print(f"{'backend':<10} {'seconds':>8} {'texts/s':>9} {'model calls':>12}")
    for name, seconds, report in rows:
        print(f"{name:<10} {seconds:>8.1f} {n_texts / seconds:>9.0f} {report.model_calls:>12}")
    print(f"largest difference between the two stores' vectors: {gap:.2e}")


if __name__ == "__main__":
    main()
