"""Issue 5 lever, measured separately: a document-side matrix as well (an index rewrite).

When a user may rewrite the stored passage vectors (no model calls, just ``D' = D Wdᵀ``), a second
linear map can be trained jointly on the passage side. Does it add anything over the query-side
map alone? Both are trained the same way (corpus softmax, scale 20, identity pull, label
smoothing, Adam 3e-4, batch 32) for fixed epoch counts, on the in-corpus protocol: the first
question of each passage trains, the second tests, and the reverse. Lyft is the tuning data; Uber
is printed as the final check.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/document_side.py [--store PATH]

Not a product feature: on this data the rewrite gave no measurable gain (docs/benchmarks.md).
"""

from __future__ import annotations

import sys

import numpy as np
import seed_data
import torch
from seed_data import DATA

from queryfit.data import load_dataset
from queryfit.embedders import get_embedder
from queryfit.evaluation import evaluate_retrieval
from queryfit.store import EmbeddingStore
from queryfit.training.losses import corpus_softmax_loss
from queryfit.training.modules import LinearMap
from queryfit.vectors import RetrievalVectors, embed_dataset

EPOCHS = (15, 30, 60)


def directions(v: RetrievalVectors) -> list[tuple[list[int], list[int]]]:
    """(train rows, test rows): first question per passage -> second, and the reverse."""
    first, second = seed_data.first_and_second(min(rel) for rel in v.relevant)
    return [(first, second), (second, first)]


def train(v: RetrievalVectors, rows: list[int], doc_side: bool, seed: int = 0):
    """Yield (epoch, query map, passage map or None) at each epoch in EPOCHS."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    query_map, doc_map = LinearMap(v.dim), LinearMap(v.dim)
    params = list(query_map.parameters()) + (list(doc_map.parameters()) if doc_side else [])
    opt = torch.optim.Adam(params, lr=3e-4)
    queries = torch.from_numpy(v.queries[rows])
    docs = torch.nn.functional.normalize(torch.from_numpy(v.docs), dim=-1)
    positives = torch.zeros(len(rows), len(v.docs), dtype=torch.bool)
    for i, r in enumerate(rows):
        positives[i, list(v.relevant[r])] = True
    for epoch in range(1, max(EPOCHS) + 1):
        for batch in torch.randperm(len(rows), generator=gen).split(32):
            d = torch.nn.functional.normalize(doc_map(docs), dim=-1) if doc_side else docs
            q = torch.nn.functional.normalize(query_map(queries[batch]), dim=-1)
            loss = corpus_softmax_loss(q, d, positives[batch], 20.0, label_smoothing=0.1)
            pull = query_map.identity_distance() + (doc_map.identity_distance() if doc_side else 0)
            loss = loss + 0.03 * pull
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch in EPOCHS:
            yield epoch, query_map, doc_map if doc_side else None


@torch.no_grad()
def scores(v: RetrievalVectors, rows: list[int], query_map, doc_map) -> dict[str, float]:
    q = query_map(torch.from_numpy(v.queries[rows])).numpy()
    d = doc_map(torch.from_numpy(v.docs)).numpy() if doc_map is not None else v.docs
    result = evaluate_retrieval(q, d, [v.relevant[r] for r in rows], metrics=["hit@5", "mrr@5"])
    return result.summary()


def main() -> int:
    parser = seed_data.parser(__doc__)
    args = parser.parse_args()
    if not seed_data.data_present():
        return 0
    torch.set_num_threads(1)
    embedder, store = get_embedder(None), EmbeddingStore(args.store)
    print("in-corpus, mean of both directions: hit@5 / MRR@5 (Δ points vs base)")
    for name in ("lyft_train", "uber_val"):
        v = embed_dataset(load_dataset(DATA / f"{name}.json"), embedder, store, progress=False)
        pairs = directions(v)
        identity = LinearMap(v.dim)
        base = [scores(v, test, identity, None) for _, test in pairs]
        b5, bm = np.mean([s["hit@5"] for s in base]), np.mean([s["mrr@5"] for s in base])
        print(f"\n{name}: base {b5:.3f} / {bm:.3f}")
        for doc_side in (False, True):
            found: dict[int, list[dict[str, float]]] = {}
            for train_rows, test_rows in pairs:
                for epoch, qm, dm in train(v, train_rows, doc_side):
                    found.setdefault(epoch, []).append(scores(v, test_rows, qm, dm))
            label = "query + document maps" if doc_side else "query map only       "
            cells = []
            for epoch, got in found.items():
                h5, m5 = np.mean([s["hit@5"] for s in got]), np.mean([s["mrr@5"] for s in got])
                cells.append(
                    f"{epoch} ep {h5:.3f} ({100 * (h5 - b5):+.1f}) / {m5:.3f} "
                    f"({100 * (m5 - bm):+.1f})"
                )
            print(f"  {label}  " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
