"""The reference experiment: train on Lyft's 10-K, evaluate on Uber's, all-MiniLM-L6-v2.

Compares the base model, LlamaIndex's adapter recipe replayed on our cached vectors, and
queryfit's default, with paired-bootstrap 95% intervals against the base; then times training on
a warm store and counts model calls on a second run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/seed_10k.py [--store PATH] [--json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import seed_data
from seed_data import DATA

from queryfit import api
from queryfit.adapters import Adapter
from queryfit.adapters.record import BaseModel
from queryfit.data import load_dataset
from queryfit.embedders import get_embedder
from queryfit.store import EmbeddingStore
from queryfit.training import fit_adapter
from queryfit.training.config import llamaindex_recipe
from queryfit.vectors import embed_dataset

METRICS = ("hit@5", "mrr@5", "ndcg@10")


def main() -> int:
    parser = seed_data.parser(__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="start from an empty store")
    args = parser.parse_args()
    if not seed_data.data_present():
        return 0

    train_set, test_set = (
        load_dataset(DATA / "lyft_train.json"),
        load_dataset(DATA / "uber_val.json"),
    )
    embedder = get_embedder(None)

    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(args.store + suffix).unlink(missing_ok=True)

    # First run: embed everything once (a cold store pays for each text once, ever).
    store = EmbeddingStore(args.store)
    api.embed(train_set, model=embedder, store=store)
    api.embed(test_set, model=embedder, store=store)
    cold_calls = store.stats.model_calls

    # LlamaIndex recipe, replayed on the cached Lyft vectors.
    lyft = embed_dataset(train_set, embedder, store, progress=False)
    start = time.perf_counter()
    recipe = fit_adapter(lyft, llamaindex_recipe()).adapter
    recipe_seconds = time.perf_counter() - start

    # queryfit's default, end to end through the API on the warm store, then a second full run
    # (train + evaluate) through a fresh store object to count model calls.
    start = time.perf_counter()
    trained = api.train(train_set, model=embedder, store=store, progress=False)
    default_seconds = time.perf_counter() - start
    second_store = EmbeddingStore(args.store)
    api.train(train_set, model=embedder, store=second_store, progress=False)
    systems = {
        "base": Adapter.identity(embedder.dim),
        "llamaindex recipe": recipe,
        "queryfit default": trained.adapter,
    }
    reports = {}
    for name, adapter in systems.items():
        adapter.base_model = BaseModel(embedder.model_id)
        reports[name] = api.evaluate(
            test_set, adapter, model=embedder, store=second_store, metrics=METRICS, progress=False
        )
    second_calls = second_store.stats.model_calls

    rows = []
    for name, report in reports.items():
        row = {"system": name}
        for d in report.differences:
            row[d.metric] = d.adapted
            row[f"{d.metric} Δ"] = (d.delta, d.low, d.high, d.significant)
        rows.append(row)
    facts = {
        "model": embedder.model_id,
        "train": f"lyft_train.json ({len(train_set.queries)} q, {len(train_set.corpus)} p)",
        "test": f"uber_val.json ({len(test_set.queries)} q, {len(test_set.corpus)} p)",
        "model_calls_first_run": f"{cold_calls} (0 when the store was already warm; see --fresh)",
        "model_calls_second_run": second_calls,
        "train_seconds_llamaindex_recipe": round(recipe_seconds, 2),
        "train_seconds_queryfit_default_warm": round(default_seconds, 2),
        "queryfit_fit_seconds": round(trained.seconds, 2),
        "queryfit_decision": trained.decision,
    }
    if args.json:
        print(json.dumps({"facts": facts, "rows": rows}, indent=2, default=float))
        return 0
    header = f"{'system':<20}" + "".join(f"{m:>8} {'Δ pts [95% CI]':>24}" for m in METRICS)
    print(header)
    for row in rows:
        line = f"{row['system']:<20}"
        for m in METRICS:
            delta, low, high, sig = row[f"{m} Δ"]
            ci = f"{100 * delta:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{'*' if sig else ' '}"
            line += f"{row[m]:>8.4f} {ci:>24}"
        print(line)
    print("(* = 95% interval on the difference from base excludes zero)")
    for key, value in facts.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
