"""Scale benchmark (issue 12): train and evaluate on 10k, 100k and 1M passages of 384-d vectors.

Synthetic clustered vectors where the base model is imperfect: passages sit in clusters of 100
close passages (cosine ~0.9 between them); a question is its passage turned by a fixed rotation
(1 radian in every plane of a random basis) plus noise, so the base model ranks the right passage
first only about half the time (nDCG@10 0.5-0.6) while a learned linear map can undo the
rotation. Pairs scale with the corpus: one training pair per 10 passages (100,000 at 1M) and
1,000 test queries up to 100k passages, 10,000 at 1M.

Each size trains with the defaults (``queryfit.train_vectors``, loss="auto") and evaluates
(``queryfit.evaluate_vectors``) in its own process, reading memory-mapped .npy files; the
figures are that process's wall seconds for the call and its peak RSS (``ru_maxrss``, which
counts the touched pages of the memory-mapped files). At 100k the exact corpus softmax is trained
too: the reference for "the adapter's gain at 1M is at least 80% of the gain the corpus softmax
reaches at 100k". At the largest size the FAISS mining recall is checked against exact search on
500 queries, and 1M vectors go through the embedding store (written in the embedder's batches,
read back, size on disk).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000]
        [--dir /tmp/queryfit-scale] [--pairs-sweep] [--json]

Data files are cached in --dir (about 2 GB at 1M) and reused when their parameters match.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
PER_CLUSTER = 100
SPREAD = 0.3  # passage = unit(centre + SPREAD * N(0, I/d)): cosine ~0.92 inside a cluster
ANGLE = 1.0  # radians, in each plane of a random basis
NOISE = 1.1  # question = rotation(passage) + NOISE * N(0, I/d)
CHUNK = 100_000
SEED = 0


# -- data ------------------------------------------------------------------------------------


def rotation(dim: int = DIM, angle: float = ANGLE, seed: int = 12345) -> np.ndarray:
    """A fixed orthogonal map: turn by ``angle`` in every plane of a random orthonormal basis."""
    g = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(g.standard_normal((dim, dim)))
    turn = np.zeros((dim, dim))
    c, s = math.cos(angle), math.sin(angle)
    for i in range(0, dim - 1, 2):
        turn[i : i + 2, i : i + 2] = [[c, -s], [s, c]]
    return (basis @ turn @ basis.T).astype(np.float32)


def sizes_for(n_docs: int) -> tuple[int, int]:
    """Training pairs and test queries for a corpus size."""
    return n_docs // 10, max(1000, n_docs // 100)


def generate(n_docs: int, folder: Path) -> Path:
    """Write docs.npy, train/test queries and relevance for one size (cached by parameters)."""
    from numpy.lib.format import open_memmap

    n_train, n_test = sizes_for(n_docs)
    meta = {
        "n_docs": n_docs,
        "n_train": n_train,
        "n_test": n_test,
        "dim": DIM,
        "per_cluster": PER_CLUSTER,
        "spread": SPREAD,
        "angle": ANGLE,
        "noise": NOISE,
        "seed": SEED,
    }
    out = folder / str(n_docs)
    if (out / "meta.json").is_file() and json.loads((out / "meta.json").read_text()) == meta:
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, n_docs])
    n_clusters = max(1, n_docs // PER_CLUSTER)
    centres = rng.standard_normal((n_clusters, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    docs = open_memmap(out / "docs.npy", mode="w+", dtype=np.float32, shape=(n_docs, DIM))
    for start in range(0, n_docs, CHUNK):
        n = min(CHUNK, n_docs - start)
        block = centres[rng.integers(n_clusters, size=n)]
        block += (SPREAD / math.sqrt(DIM)) * rng.standard_normal((n, DIM), dtype=np.float32)
        docs[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    docs.flush()
    turn = rotation()
    for name, count in (("train", n_train), ("test", n_test)):
        target = rng.integers(n_docs, size=count)
        queries = np.asarray(docs[np.sort(target)]) @ turn.T
        order = np.argsort(np.argsort(target, kind="stable"), kind="stable")
        queries = queries[order]  # back in the order of ``target``
        queries += (NOISE / math.sqrt(DIM)) * rng.standard_normal(queries.shape, dtype=np.float32)
        np.save(out / f"{name}_queries.npy", queries.astype(np.float32))
        np.save(out / f"{name}_relevant.npy", target.astype(np.int64))
    del docs
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def load(folder: Path, part: str) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    docs = np.load(folder / "docs.npy", mmap_mode="r")
    queries = np.load(folder / f"{part}_queries.npy", mmap_mode="r")
    relevant = [[int(r)] for r in np.load(folder / f"{part}_relevant.npy")]
    return queries, docs, relevant


# -- workers (each in its own process: its peak RSS is the work's) ---------------------------


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker_train(folder: Path, loss: str, adapter: Path, train_pairs: int | None) -> dict:
    import queryfit
    from queryfit.training import TrainConfig

    queries, docs, relevant = load(folder, "train")
    if train_pairs is not None:
        queries, relevant = queries[:train_pairs], relevant[:train_pairs]
    start = time.perf_counter()
    report = queryfit.train_vectors(
        queries, docs, relevant, config=TrainConfig(loss=loss), out=adapter
    )
    seconds = time.perf_counter() - start
    facts = report.facts  # adapter.json's training record
    return {
        "seconds": seconds,
        "peak_rss_gib": peak_rss_gib(),
        "decision": report.decision,
        "loss_used": facts.loss_used,
        "dev_base": facts.dev.base,
        "dev_adapted": facts.dev.adapted,
        "best_epoch": facts.best_epoch,
        "train_queries": facts.split.train_queries,
        "dev_queries": facts.split.dev_queries,
        "stages": facts.stages,
        "epochs_run": len(facts.history) - 1,
    }


def worker_evaluate(folder: Path, adapter: Path) -> dict:
    import queryfit

    queries, docs, relevant = load(folder, "test")
    start = time.perf_counter()
    report = queryfit.evaluate_vectors(
        queries, docs, relevant, adapter, metrics=("ndcg@10", "hit@1", "hit@10")
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_gib": peak_rss_gib(),
        "base_ndcg10": report.base["ndcg@10"],
        "adapted_ndcg10": report.adapted["ndcg@10"],
        "verdict": report.verdict,
    }


def worker_loss_costs(folder: Path) -> dict:
    """Seconds per epoch of the corpus and the sampled softmax at several queries x passages
    (one dev-free epoch each, after a warm-up step): what ``corpus_softmax_max`` is chosen from."""
    import torch

    from queryfit.training import TrainConfig
    from queryfit.training.trainer import _Run
    from queryfit.vectors import RetrievalVectors

    queries, docs, relevant = load(folder, "train")
    out = []
    for n_queries, n_docs in ((1000, 10_000), (2000, 50_000), (2000, 100_000), (8000, 100_000)):
        keep = [i for i, r in enumerate(relevant) if r[0] < n_docs][:n_queries]
        data = RetrievalVectors(
            np.asarray(queries[keep]),
            np.asarray(docs[:n_docs]),
            [{relevant[i][0]: 1.0} for i in keep],
        )
        row = {"queries": len(keep), "passages": n_docs, "scores": len(keep) * n_docs}
        for loss in ("corpus", "sampled"):
            torch.set_num_threads(1 if data.docs.size < 20_000_000 else torch.get_num_threads())
            run = _Run(data, TrainConfig(loss=loss))
            start = time.perf_counter()
            run.epoch()
            row[f"{loss}_epoch_seconds"] = time.perf_counter() - start
        out.append(row)
    return {"loss_costs": out}


def worker_mining(folder: Path, sample: int) -> dict:
    from queryfit.training import mining

    queries, docs, relevant = load(folder, "train")
    unit = np.asarray(docs)  # already unit length
    start = time.perf_counter()
    index = mining.IVFIndex(unit)
    build = time.perf_counter() - start
    positives = [np.asarray(r, dtype=np.int64) for r in relevant]
    start = time.perf_counter()
    recall = mining.mining_recall(queries, unit, positives, 32, 0.95, index=index, sample=sample)
    return {
        "nlist": index.nlist,
        "nprobe": index.nprobe,
        "index_seconds": build,
        "check_seconds": time.perf_counter() - start,
        "recall": recall,
        "sample": sample,
    }


class ArrayEmbedder:
    """Texts ``"p<row>"`` embed to row ``row`` of an array: stands in for a model so the store's
    own write and read speed is what is measured."""

    def __init__(self, docs: np.ndarray, batch: int) -> None:
        from queryfit.embedders.base import BaseEmbedder

        class _Embedder(BaseEmbedder):
            model_id = "bench:array"
            dim = docs.shape[1]
            max_batch_size = batch

            def _embed(self, texts, kind):
                return np.asarray(docs[[int(t[1:]) for t in texts]])

        self.embedder = _Embedder()


def worker_store(folder: Path, path: Path, batch: int) -> dict:
    from queryfit.store import EmbeddingStore

    _, docs, _ = load(folder, "train")
    texts = [f"p{i}" for i in range(len(docs))]
    embedder = ArrayEmbedder(docs, batch).embedder
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = EmbeddingStore(path)
    start = time.perf_counter()
    store.embed(embedder, texts, "document", progress=False)
    write = time.perf_counter() - start
    store.close()
    store = EmbeddingStore(path)  # a cold object, as a later run sees it
    start = time.perf_counter()
    back = store.embed(embedder, texts, "document", progress=False)
    read = time.perf_counter() - start
    assert store.stats.model_calls == 0 and np.array_equal(back[:1000], np.asarray(docs[:1000]))
    size = sum(
        Path(str(path) + s).stat().st_size for s in ("", "-wal") if Path(str(path) + s).exists()
    )
    return {
        "vectors": len(docs),
        "write_seconds": write,
        "write_batches": math.ceil(len(docs) / batch),
        "read_seconds": read,
        "read_per_second": len(docs) / read,
        "bytes_on_disk": size,
        "bytes_per_vector": size / len(docs),
        "peak_rss_gib": peak_rss_gib(),
    }


# -- driver ----------------------------------------------------------------------------------


def run_worker(*args: str) -> dict:
    """Run this script as a worker process and return the JSON line it prints."""
    cmd = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(rows: list[dict], key: str) -> str:
    """``t2/t1 for N2/N1`` between consecutive sizes, as a power of the corpus (the pairs grow
    alike)."""
    parts = []
    for a, b in zip(rows, rows[1:], strict=False):
        ta, tb = a.get(key), b.get(key)
        if ta and tb and ta > 0:
            exp = math.log(tb / ta) / math.log(b["n_docs"] / a["n_docs"])
            parts.append(f"x{tb / ta:.1f} for x{b['n_docs'] // a['n_docs']} (~N^{exp:.2f})")
    return ", ".join(parts) or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dir", default="/tmp/queryfit-scale")
    parser.add_argument("--pairs-sweep", action="store_true", help="100k passages, 3 pair counts")
    parser.add_argument("--no-store", action="store_true")
    parser.add_argument(
        "--loss-costs", action="store_true", help="epoch seconds, corpus vs sampled softmax"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--show", help="print the report of a saved results.json and stop")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.show:
        saved = json.loads(Path(args.show).read_text())
        report(saved.pop("rows"), saved)
        return 0
    if args.worker:
        kind, folder, *rest = args.worker
        folder = Path(folder)
        if kind == "train":
            pairs = int(rest[2]) if len(rest) > 2 else None
            out = worker_train(folder, rest[0], Path(rest[1]), pairs)
        elif kind == "evaluate":
            out = worker_evaluate(folder, Path(rest[0]))
        elif kind == "mining":
            out = worker_mining(folder, int(rest[0]))
        elif kind == "loss-costs":
            out = worker_loss_costs(folder)
        else:
            out = worker_store(folder, Path(rest[0]), int(rest[1]))
        print(json.dumps(out, default=float))
        return 0

    root = Path(args.dir)
    sizes = [int(s) for s in args.sizes.split(",") if s]  # "" with --pairs-sweep: the sweep only
    rows: list[dict] = []
    extra: dict = {}
    for n_docs in sizes:
        start = time.perf_counter()
        folder = generate(n_docs, root)
        n_train, n_test = sizes_for(n_docs)
        print(f"[{n_docs:,}] data ready in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        row: dict = {"n_docs": n_docs, "pairs": n_train, "test": n_test}
        losses = ["auto", "corpus"] if n_docs == 100_000 else ["auto"]
        for loss in losses:
            adapter = folder / f"adapter-{loss}"
            train = run_worker("train", str(folder), loss, str(adapter))
            print(f"[{n_docs:,}] train {loss}: {train['seconds']:.0f}s", file=sys.stderr)
            evaluation = run_worker("evaluate", str(folder), str(adapter))
            print(f"[{n_docs:,}] evaluate: {evaluation['seconds']:.0f}s", file=sys.stderr)
            key = "" if loss == "auto" else "corpus_"
            row[f"{key}train"], row[f"{key}evaluate"] = train, evaluation
        rows.append(row)
    largest = sizes[-1] if sizes else 0
    folder = root / str(largest)
    if sizes and (largest >= 1_000_000 or len(sizes) == 1):
        extra["mining"] = run_worker("mining", str(folder), "500")
        print(f"[{largest:,}] mining recall {extra['mining']['recall']:.3f}", file=sys.stderr)
    if sizes and not args.no_store:
        extra["store"] = run_worker("store", str(folder), str(root / "store.sqlite"), "4096")
        (root / "store.sqlite").unlink(missing_ok=True)
        print(
            f"[{largest:,}] store read {extra['store']['read_per_second']:,.0f}/s", file=sys.stderr
        )
    if args.pairs_sweep:
        folder = generate(100_000, root)
        extra["pairs_sweep"] = [
            run_worker("train", str(folder), "auto", str(folder / f"adapter-p{p}"), str(p))
            | {"pairs": p}
            for p in (2_500, 5_000, 10_000)
        ]
    if args.loss_costs:
        extra |= run_worker("loss-costs", str(generate(100_000, root)))
    result = {"rows": rows, **extra}
    name = "results.json" if sizes else "results-extra.json"
    (root / name).write_text(json.dumps(result, indent=2, default=float))
    if args.json:
        print(json.dumps(result, indent=2, default=float))
        return 0
    report(rows, extra)
    return 0


def report(rows: list[dict], extra: dict) -> None:
    if rows:
        report_sizes(rows, extra)
    if "pairs_sweep" in extra:
        print("\nwith the pairs, at 100,000 passages (train seconds by stage):")
        for run in extra["pairs_sweep"]:
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in run["stages"].items())
            print(f"  {run['pairs']:>7,} pairs: {run['seconds']:.0f}s ({stages})")
    if "loss_costs" in extra:
        print("\nseconds per training epoch (no dev scoring), corpus vs sampled softmax:")
        for row in extra["loss_costs"]:
            print(
                f"  {row['queries']:>6,} queries x {row['passages']:>7,} passages "
                f"({row['scores']:.1e} scores): corpus {row['corpus_epoch_seconds']:6.1f}s, "
                f"sampled {row['sampled_epoch_seconds']:5.1f}s"
            )
    if "mining" in extra:
        m = extra["mining"]
        print(
            f"\nmining recall (IVF, {m['nlist']} cells, {m['nprobe']} nearest + the relevant "
            f"passages' cells) vs exact: {m['recall']:.3f} of the exact top-32 hard negatives on "
            f"{m['sample']} queries (index built in {m['index_seconds']:.0f}s)"
        )
    if "store" in extra:
        s = extra["store"]
        print(
            f"store: {s['vectors']:,} vectors written in {s['write_batches']:,} batches in "
            f"{s['write_seconds']:.0f}s, read back in {s['read_seconds']:.1f}s "
            f"({s['read_per_second']:,.0f}/s, goal >= 300,000/s), "
            f"{s['bytes_on_disk'] / 2**30:.2f} GiB on disk ({s['bytes_per_vector']:.0f} B/vector)"
        )


def report_sizes(rows: list[dict], extra: dict) -> None:
    print(
        f"{'passages':>10} {'pairs':>7} {'test':>6} {'loss':>8} {'train s':>8} {'RSS GiB':>8} "
        f"{'eval s':>7} {'RSS GiB':>8} {'total s':>8} {'base':>6} {'adapted':>8} {'gain':>6}"
    )
    for row in rows:
        for key in ("", "corpus_"):
            if f"{key}train" not in row:
                continue
            t, e = row[f"{key}train"], row[f"{key}evaluate"]
            gain = e["adapted_ndcg10"] - e["base_ndcg10"]
            print(
                f"{row['n_docs']:>10,} {row['pairs']:>7,} {row['test']:>6,} {t['loss_used']:>8} "
                f"{t['seconds']:>8.0f} {t['peak_rss_gib']:>8.2f} {e['seconds']:>7.0f} "
                f"{e['peak_rss_gib']:>8.2f} {t['seconds'] + e['seconds']:>8.0f} "
                f"{e['base_ndcg10']:>6.3f} {e['adapted_ndcg10']:>8.3f} {gain:>+6.3f}"
            )
    print("\ndev decisions:")
    for row in rows:
        for key in ("", "corpus_"):
            if f"{key}train" in row:
                print(
                    f"  {row['n_docs']:,} ({row[key + 'train']['loss_used']}): "
                    f"{row[key + 'train']['decision']}"
                )
    reference = next((r for r in rows if "corpus_train" in r), None)
    last = rows[-1]
    if reference is not None and last is not reference:
        ref_gain = (
            reference["corpus_evaluate"]["adapted_ndcg10"]
            - reference["corpus_evaluate"]["base_ndcg10"]
        )
        gain = last["evaluate"]["adapted_ndcg10"] - last["evaluate"]["base_ndcg10"]
        print(
            f"\ngain at {last['n_docs']:,}: {gain:+.3f} = {gain / ref_gain:.0%} of the corpus "
            f"softmax's {ref_gain:+.3f} at {reference['n_docs']:,} (goal >= 80%)"
        )
        total = last["train"]["seconds"] + last["evaluate"]["seconds"]
        rss = max(last["train"]["peak_rss_gib"], last["evaluate"]["peak_rss_gib"])
        print(
            f"train + evaluate at {last['n_docs']:,}: {total:.0f}s (goal <= 600), "
            f"peak RSS {rss:.2f} GiB (goal <= 8)"
        )
    print("\nseconds per training stage, and how they grow (pairs grow with the corpus here):")
    stages = sorted({s for r in rows for s in r["train"]["stages"]})
    for stage in stages:
        values = [r["train"]["stages"].get(stage) for r in rows]
        shown = "  ".join(f"{v:>8.1f}" if v is not None else f"{'-':>8}" for v in values)
        flat = [{"n_docs": r["n_docs"], "t": r["train"]["stages"].get(stage)} for r in rows]
        print(f"  {stage:<20} {shown}   {growth(flat, 't')}")
    flat = [{"n_docs": r["n_docs"], "t": r["evaluate"]["seconds"]} for r in rows]
    print(
        f"  {'evaluate (2 systems)':<20} "
        + "  ".join(f"{r['evaluate']['seconds']:>8.1f}" for r in rows)
        + f"   {growth(flat, 't')}"
    )


if __name__ == "__main__":
    sys.exit(main())
