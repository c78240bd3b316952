"""Training policy: how dev is held out, whether settings are searched, and what ships.

:func:`train_adapter` is the whole decision behind ``queryfit train``, on vectors alone:

* **cross-validation** (k folds in lockstep, every question scored once as dev) when the data is
  small enough for it to be cheap and a single small dev split too noisy
  (``cv_folds <= queries <= cv_max_queries`` and queries x passages within
  ``corpus_softmax_max``, split by coverage, a trained family);
* otherwise **one dev split**: new questions over passages training covers when the data has
  them (``split_by="coverage"``), or the leak-free dataset split by query or by passage; at scale
  its dev is a bounded sample (:mod:`queryfit.training.scale`);
* ``search=True`` first tries a small grid of settings on that dev split;
* **no dev** at all with ``dev_fraction=0``: the fixed epoch count trains, nothing gates.

It returns the adapter and the typed :class:`~queryfit.adapters.record.TrainingFacts` that
``adapter.json`` keeps, so the record is built in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from queryfit.adapters import Adapter
from queryfit.adapters.record import DevScores, SplitFacts, TrainingFacts
from queryfit.data import QADataset, split_dataset
from queryfit.errors import TrainingError, require_extra
from queryfit.training.config import TrainConfig
from queryfit.vectors import RetrievalVectors, restrict

SPLIT_BY = ("coverage", "query", "passage")


@dataclass
class TrainedAdapter:
    """An adapter and the facts of its training (what ``adapter.json`` records)."""

    adapter: Adapter
    facts: TrainingFacts
    config: TrainConfig  # the settings used (a search may have changed the given ones)


def check_settings(config: TrainConfig, split_by: str, dev_fraction: float) -> None:
    """Reject bad settings before any embedding is paid for."""
    config.validate()
    if split_by not in SPLIT_BY:
        raise TrainingError(
            f"split_by (--split-by) must be coverage, query or passage, not {split_by!r}"
        )
    if not 0.0 <= dev_fraction < 1.0:
        raise TrainingError(
            f"dev_fraction (--dev-fraction) must be in [0, 1) (0: no dev split), not {dev_fraction}"
        )


def _cross_validation_wanted(config: TrainConfig, split_by: str, dev_fraction: float) -> bool:
    return (
        dev_fraction > 0
        and split_by == "coverage"
        and config.cv_folds >= 2
        and config.adapter_type != "procrustes"
    )


def train_adapter(
    vectors: RetrievalVectors,
    config: TrainConfig,
    *,
    dev_fraction: float = 0.2,
    split_by: str = "coverage",
    search: bool = False,
    dataset: QADataset | None = None,
    on_epoch: Any = None,
) -> TrainedAdapter:
    """Hold out dev as the module docstring says, fit, gate, refit; return adapter and facts.

    ``dataset`` (the one ``vectors`` were embedded from) is needed only for
    ``split_by="query"`` or ``"passage"``, which split the dataset leak-free.
    """
    check_settings(config, split_by, dev_fraction)
    require_extra("torch", "train", "training an adapter")
    from queryfit.training.scale import cross_validation_refusal
    from queryfit.training.trainer import fit_adapter, fit_adapter_cv  # torch from here on

    n = len(vectors.queries)
    # Large data (issue 12): one split, its dev a bounded sample (training/scale.py).
    refusal = cross_validation_refusal(config, n, len(vectors.docs))
    wanted = _cross_validation_wanted(config, split_by, dev_fraction)
    cross_validate = wanted and config.cv_folds <= n and refusal is None
    train, dev, split = vectors, None, SplitFacts(train_queries=n)
    if dev_fraction > 0 and (search or not cross_validate):
        train, dev, split = _dev_split(vectors, config, dev_fraction, split_by, dataset)
        if wanted and refusal is not None:
            split.description += f"; {refusal}"
    search_table = None
    if search and dev is not None:
        from queryfit.training.search import search as search_settings

        found = search_settings(train, dev, config)
        config, search_table = found.best_config, found.table()
    if cross_validate:
        result = fit_adapter_cv(vectors, config, on_epoch=on_epoch)
        dev_count = n // config.cv_folds  # the sizes of one fold; every query is dev once
        split = SplitFacts(
            train_queries=n - dev_count,
            dev_queries=dev_count,
            cv_folds=config.cv_folds,
            description=f"dev: {config.cv_folds}-fold cross-validation, each of the {n} "
            "questions scored once as dev",
        )
    else:
        result = fit_adapter(train, config, dev=dev, refit_on=vectors, on_epoch=on_epoch)
    facts = TrainingFacts(
        config=config.to_dict() | {"split_by": split_by, "dev_fraction": dev_fraction},
        decision=result.decision,
        shipped_identity=result.shipped_identity,
        best_epoch=result.best_epoch,
        dev=DevScores(config.select_metric, result.identity_score, result.best_score),
        history=[record.__dict__ for record in result.history],
        seconds=round(result.seconds, 3),
        split=split,
        blend=result.blend,
        search=search_table,
        loss_used=result.loss,
        stages=result.stages,
    )
    return TrainedAdapter(result.adapter, facts, config)


def _dev_split(
    vectors: RetrievalVectors,
    config: TrainConfig,
    dev_fraction: float,
    split_by: str,
    dataset: QADataset | None,
) -> tuple[RetrievalVectors, list[RetrievalVectors], SplitFacts]:
    """One held-out dev split: by coverage on the vectors, or leak-free on the dataset; at scale
    its dev is a bounded sample (the other held-out questions then neither train nor score)."""
    from queryfit.training.scale import max_dev_queries

    max_dev = max_dev_queries(config, len(vectors.docs))
    bounded = (
        f", a bounded sample (dev_max_queries {config.dev_max_queries:,}, "
        f"dev_max_scores {config.dev_max_scores:,})"
    )
    if split_by == "coverage":
        from queryfit.training.splits import coverage_split, dev_parts, duplicate_groups

        chosen = coverage_split(
            vectors.relevant,
            dev_fraction,
            config.seed,
            duplicate_of=duplicate_groups(vectors.queries),
            max_dev=max_dev,
        )
        train = vectors.select(chosen.train_rows)
        dev = dev_parts(vectors, chosen.dev_rows, chosen.train_rows)
        description = chosen.describe()
        if round(dev_fraction * len(vectors.queries)) > max_dev:
            description += bounded
    else:
        if dataset is None:
            raise TrainingError(
                f"split_by={split_by!r} splits the dataset the vectors came from; pass it, or "
                "use split_by='coverage'"
            )
        train_part, dev_part = split_dataset(
            dataset, dev_fraction=dev_fraction, by=split_by, seed=config.seed
        )
        train, held_out = restrict(vectors, train_part), restrict(vectors, dev_part)
        description = ""
        if len(held_out.queries) > max_dev:
            rng = np.random.default_rng(config.seed)
            rows = np.sort(rng.choice(len(held_out.queries), max_dev, replace=False))
            held_out = held_out.select(rows.tolist())
            description = f"dev: held out by {split_by}{bounded}"
        dev = [held_out]
    split = SplitFacts(
        train_queries=len(train.queries),
        dev_queries=sum(len(part.queries) for part in dev),
        description=description,
    )
    return train, dev, split
