"""The Lyft-only proxies behind issue 5's defaults (the Uber sides are never used here).

* ic (in-corpus): within lyft_train.json the first question of each passage trains and the
  second tests, and the reverse: new questions over covered passages.
* xc (cross-corpus): Lyft's passages split in two halves; train on one half's questions and
  passages, test on the other half's (a corpus training never saw), and the reverse.

Each configuration is fitted exactly as ``queryfit train`` fits it (cross-validated, or one dev
split when ``cv_folds=0``) for seeds 0-2; printed: mean Δ hit@5 and Δ MRR@5 in points over the
six fits per proxy, and the chosen epochs (I = the gate shipped the identity).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tuning.py [--store PATH]
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import seed_data
from seed_data import DATA

from queryfit.adapters import Adapter
from queryfit.data import load_dataset
from queryfit.embedders import get_embedder
from queryfit.evaluation import evaluate_retrieval
from queryfit.store import EmbeddingStore
from queryfit.training import TrainConfig, fit_adapter, fit_adapter_cv
from queryfit.training.splits import coverage_split, dev_parts, duplicate_groups
from queryfit.vectors import RetrievalVectors, embed_dataset

CONFIGS = {
    "default (3-fold cross-validation)": {},
    "5-fold cross-validation": {"cv_folds": 5},
    "one dev split (cv_folds=0)": {"cv_folds": 0},
    "one dev split, gate at 1 standard error": {"cv_folds": 0, "gate_z": 1.0},
}


def fit(v: RetrievalVectors, config: TrainConfig):
    """What api.train does after embedding, on vectors."""
    if config.cv_folds >= 2:
        return fit_adapter_cv(v, config)
    split = coverage_split(v.relevant, 0.2, config.seed, duplicate_of=duplicate_groups(v.queries))
    dev = dev_parts(v, split.dev_rows, split.train_rows)
    return fit_adapter(v.select(split.train_rows), config, dev=dev, refit_on=v)


def proxies(v: RetrievalVectors) -> dict[str, list[tuple[RetrievalVectors, RetrievalVectors]]]:
    first, second = seed_data.first_and_second(min(rel) for rel in v.relevant)
    ic1, ic2 = v.select(first), v.select(second)
    passages = sorted({min(rel) for rel in v.relevant})
    rng = np.random.default_rng(0)
    half = set(rng.choice(passages, len(passages) // 2, replace=False).tolist())

    def side(inside: bool) -> RetrievalVectors:
        rows = [i for i, rel in enumerate(v.relevant) if (min(rel) in half) == inside]
        docs = sorted({d for r in rows for d in v.relevant[r]})
        row_of = {d: j for j, d in enumerate(docs)}
        relevant = [{row_of[d]: g for d, g in v.relevant[r].items()} for r in rows]
        return RetrievalVectors(v.queries[rows], v.docs[docs], relevant)

    xa, xb = side(True), side(False)
    return {"ic": [(ic1, ic2), (ic2, ic1)], "xc": [(xa, xb), (xb, xa)]}


def scores(adapter: Adapter, test: RetrievalVectors) -> np.ndarray:
    queries = adapter.transform(test.queries)
    got = evaluate_retrieval(queries, test.docs, test.relevant, metrics=["hit@5", "mrr@5"])
    return np.array([got.summary()["hit@5"], got.summary()["mrr@5"]])


def main() -> int:
    parser = seed_data.parser(__doc__)
    args = parser.parse_args()
    if not seed_data.data_present():
        return 0
    lyft = load_dataset(DATA / "lyft_train.json")
    v = embed_dataset(lyft, get_embedder(None), EmbeddingStore(args.store), progress=False)
    sets = proxies(v)
    print("Δ points vs base, mean over 2 directions x seeds 0-2: hit@5 / MRR@5 [chosen epochs]")
    for name, changes in CONFIGS.items():
        cells = []
        for proxy, pairs in sets.items():
            gains, epochs = [], []
            for train, test in pairs:
                base = scores(Adapter.identity(v.dim), test)
                for seed in (0, 1, 2):
                    result = fit(train, replace(TrainConfig(), seed=seed, **changes))
                    gains.append(scores(result.adapter, test) - base)
                    epochs.append("I" if result.shipped_identity else str(result.best_epoch))
            h5, m5 = 100 * np.mean(gains, axis=0)
            cells.append(f"{proxy}: {h5:+.1f} / {m5:+.1f} [{','.join(epochs)}]")
        print(f"{name:<42} " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
