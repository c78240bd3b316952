"""Quality benchmark (issue 5): does the adapter win, by how much, and is the gain real?

Two protocols with all-MiniLM-L6-v2 on the seed data, vectors read from the embedding store (no
model calls on a warm store):

* seed: train on lyft_train.json (dev chosen inside it) -> test on uber_val.json (another corpus).
* in-corpus: within uber_val.json, the first question of each passage trains, the second tests
  (new questions over passages the training pairs cover: the intended use).

Systems: base, the LlamaIndex recipe replayed on cached vectors, queryfit's default (exactly
`queryfit train`: api.train on the warm store), and one row
per lever. Every difference from base carries a paired-bootstrap 95% interval. Then the spread
over seeds, a learning curve at 10/25/50/100% of the pairs, and the default's training time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/quality.py [--store PATH] [--quick] [--json]

Settings were chosen on Lyft dev splits only; the Uber sides are the final test.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import seed_data
from seed_data import DATA

from queryfit import api
from queryfit.adapters import Adapter
from queryfit.data import QADataset, load_dataset
from queryfit.embedders import get_embedder
from queryfit.evaluation import compare, evaluate_retrieval
from queryfit.store import EmbeddingStore
from queryfit.training import TrainConfig, fit_adapter
from queryfit.training.config import llamaindex_recipe
from queryfit.vectors import RetrievalVectors, embed_dataset

METRICS = ("hit@1", "hit@5", "hit@10", "mrr@5", "mrr@10", "ndcg@10")
SHOWN = ("hit@1", "hit@5", "hit@10", "mrr@5", "mrr@10", "ndcg@10")


LEVERS: dict[str, dict] = {
    "one dev split instead of cross-validation (cv_folds=0)": {"cv_folds": 0},
    "no label smoothing": {"label_smoothing": 0.0},
    "identity pull 0.01 (was the default)": {"identity_penalty": 0.01},
    "gate at 1 standard error": {"gate_z": 1.0},
    "no blend": {"blend": False},
    "low_rank r=32": {"adapter_type": "low_rank", "rank": 32},
    "residual_mlp h=256": {"adapter_type": "residual_mlp", "hidden_dim": 256},
    "procrustes (closed form)": {"adapter_type": "procrustes"},
    "in_batch + 8 hard negatives": {"loss": "in_batch", "hard_negatives": 8},
    "scale 50": {"scale": 50.0},
}


def train_like_cli(data: QADataset, config: TrainConfig, embedder, store):
    """Exactly what ``queryfit train`` does (dev choice, gate, refit), on the warm store."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-data warning, expected in the curve
        report = api.train(data, model=embedder, store=store, config=config, progress=False)
    return report


def in_corpus(data: QADataset) -> tuple[QADataset, QADataset]:
    """First question of each passage trains, the second tests (same corpus)."""
    ids = list(data.queries)
    first, second = seed_data.first_and_second(min(data.relevant_docs[q]) for q in ids)
    return data.subset(ids[r] for r in first), data.subset(ids[r] for r in second)


def subsample(data: QADataset, share: float, seed: int = 0) -> QADataset:
    ids = list(data.queries)
    rows = np.random.default_rng(seed).permutation(len(ids))[: round(share * len(ids))]
    return data.subset(ids[i] for i in sorted(rows.tolist()))


def per_query(adapter: Adapter, test: RetrievalVectors):
    return evaluate_retrieval(
        adapter.transform(test.queries), test.docs, test.relevant, metrics=list(METRICS)
    ).metrics


def row(name, adapter, test, base_pq, n_resamples, extra=""):
    pq = per_query(adapter, test)
    diffs = {d.metric: d for d in compare(base_pq, pq, n_resamples=n_resamples, seed=0)}
    return {"system": name, "note": extra, **{m: diffs[m] for m in METRICS}}


def fmt_table(rows) -> str:
    head = "| system | " + " | ".join(SHOWN) + " |"
    lines = [head, "|" + "---|" * (len(SHOWN) + 1)]
    for r in rows:
        cells = []
        for m in SHOWN:
            d = r[m]
            if r["system"] == "base":
                cells.append(f"{d.base:.3f}")
            else:
                star = "*" if d.significant else ""
                cells.append(
                    f"{d.adapted:.3f} ({100 * d.delta:+.1f} [{100 * d.low:+.1f}, "
                    f"{100 * d.high:+.1f}]{star})"
                )
        name = r["system"] + (f" — {r['note']}" if r["note"] else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol(name, train: QADataset, test, ctx, levers, n_resamples, out):
    embedder, store = ctx
    train_vectors = embed_dataset(train, embedder, store, progress=False)
    base = Adapter.identity(train_vectors.dim)
    base_pq = per_query(base, test)
    rows = [row("base", base, test, base_pq, n_resamples)]
    recipe = fit_adapter(train_vectors, llamaindex_recipe()).adapter
    rows.append(row("llamaindex recipe", recipe, test, base_pq, n_resamples))
    start = time.perf_counter()
    default = train_like_cli(train, TrainConfig(), *ctx)
    out["timing"][name] = round(time.perf_counter() - start, 2)
    rows.append(
        row("queryfit default", default.adapter, test, base_pq, n_resamples, _note(default))
    )
    out["decisions"][name] = default.decision
    for lever, changes in levers.items():
        result = train_like_cli(train, replace(TrainConfig(), **changes), *ctx)
        rows.append(row(lever, result.adapter, test, base_pq, n_resamples, _note(result)))
    out["tables"][name] = rows
    spread = []
    for seed in (0, 1, 2):
        result = train_like_cli(train, TrainConfig(seed=seed), *ctx)
        s = {m: float(np.mean(v)) for m, v in per_query(result.adapter, test).items()}
        spread.append((seed, s["hit@5"], s["mrr@5"], s["ndcg@10"]))
    out["seeds"][name] = spread
    curve = []
    for share in (0.1, 0.25, 0.5, 1.0):
        part = subsample(train, share) if share < 1 else train
        result = train_like_cli(part, TrainConfig(), *ctx)
        pq = per_query(result.adapter, test)
        d = {x.metric: x for x in compare(base_pq, pq, n_resamples=2000, seed=0)}
        curve.append((share, len(part.queries), d["hit@5"], d["mrr@5"], result.shipped_identity))
    out["curve"][name] = curve


def _note(report) -> str:
    if report.shipped_identity:
        return "gate shipped identity"
    blend = report.adapter.training.blend
    return f"epoch {report.best_epoch}" + (f", blend {blend:g}" if blend != 1.0 else "")


def main() -> int:
    parser = seed_data.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="no levers, 2000 resamples")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not seed_data.data_present():
        return 0
    ctx = (get_embedder(None), EmbeddingStore(args.store))
    lyft, uber = load_dataset(DATA / "lyft_train.json"), load_dataset(DATA / "uber_val.json")
    n_resamples = 2000 if args.quick else 10_000
    levers = {} if args.quick else LEVERS
    out: dict = {"tables": {}, "timing": {}, "decisions": {}, "seeds": {}, "curve": {}}
    ic_train, ic_test = in_corpus(uber)
    protocols = {
        "seed (lyft -> uber)": (lyft, uber),
        "in-corpus (uber q1 -> q2)": (ic_train, ic_test),
    }
    for name, (train, test_data) in protocols.items():
        test = embed_dataset(test_data, *ctx, progress=False)
        protocol(name, train, test, ctx, levers, n_resamples, out)
        if not args.json:
            _print_protocol(name, train, test, out)
    # End to end through the API on the warm store (reads vectors, cross-validates, trains).
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        train_like_cli(lyft, TrainConfig(), *ctx)
        runs.append(time.perf_counter() - start)
    median = float(np.median(runs))
    out["timing"]["api.train on lyft, warm store, median of 3"] = round(median, 2)
    if args.json:
        print(json.dumps(out, indent=2, default=lambda o: o.__dict__))
        return 0
    print("\ntraining time (s):", out["timing"])
    print(
        f"api.train on lyft, warm store: median {median:.2f} s "
        f"(runs {', '.join(f'{r:.2f}' for r in runs)}; shared machine, timings are noisy)"
    )
    return 0


def _print_protocol(name, train, test, out):
    print(
        f"\n## {name}: train {len(train.queries)} q, test {len(test.queries)} q over "
        f"{len(test.docs)} passages"
    )
    print("values: adapted (Δ points vs base [95% paired-bootstrap CI], * = excludes 0)\n")
    print(fmt_table(out["tables"][name]))
    print(f"\ndefault decision: {out['decisions'][name]}")
    print(
        "seeds (seed, hit@5, mrr@5, ndcg@10):",
        ", ".join(f"({s}, {a:.3f}, {b:.3f}, {c:.3f})" for s, a, b, c in out["seeds"][name]),
    )
    print("learning curve (share, pairs, Δhit@5 [CI], Δmrr@5 [CI]):")
    for share, n, h, m, ident in out["curve"][name]:
        print(
            f"  {share:>4.0%} {n:>4}  {100 * h.delta:+.1f} [{100 * h.low:+.1f}, "
            f"{100 * h.high:+.1f}]  {100 * m.delta:+.1f} [{100 * m.low:+.1f}, "
            f"{100 * m.high:+.1f}]{'  (identity shipped)' if ident else ''}"
        )


if __name__ == "__main__":
    sys.exit(main())
