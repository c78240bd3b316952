"""How training adapts to the size of the data, decided from counts alone (no torch, no arrays).

Three choices change with size, each measured on 2 CPU cores (docs/benchmarks.md, "Scale"):

* the loss: the corpus softmax scores every passage for every training query, each epoch; above
  ``config.corpus_softmax_max`` such scores per epoch the sampled softmax takes over (shared random
  negatives plus mined hard negatives, logQ-corrected; see :mod:`queryfit.training.losses`);
* cross-validation: every query is scored as dev against every passage each epoch, so it is used
  only while that is as cheap as a corpus-softmax epoch, and up to ``config.cv_max_queries``;
* the dev sample: at most ``config.dev_max_queries`` dev queries and ``config.dev_max_scores``
  query x passage scores per scoring, each query searched exactly;
* patience: ``config.scale_patience`` epochs with the sampled softmax, whose epochs are long.
"""

from __future__ import annotations

from queryfit.training.config import TrainConfig


def resolve_loss(config: TrainConfig, n_queries: int, n_docs: int) -> str:
    """The loss a run uses: ``config.loss``, or for ``"auto"`` the corpus softmax while
    affordable."""
    if config.loss != "auto":
        return config.loss
    return "corpus" if n_queries * n_docs <= config.corpus_softmax_max else "sampled"


def loss_note(config: TrainConfig, n_queries: int, n_docs: int) -> str:
    """One line for the decision when ``"auto"`` chose the sampled softmax ("" otherwise)."""
    if resolve_loss(config, n_queries, n_docs) != "sampled":
        return ""
    why = (
        f" ({n_queries:,} queries x {n_docs:,} passages > corpus_softmax_max "
        f"{config.corpus_softmax_max:,} scores per epoch)"
        if config.loss == "auto"
        else ""
    )
    return (
        f"loss: sampled softmax over {config.sampled_negatives:,} shared random and "
        f"{config.hard_negatives_for('sampled')} mined hard negatives per query, "
        f"logQ-corrected{why}"
    )


def cross_validation_refusal(config: TrainConfig, n_queries: int, n_docs: int) -> str | None:
    """Why k-fold cross-validation is not used at this size, or ``None`` when it is affordable."""
    if n_queries > config.cv_max_queries:
        return (
            f"one dev split: cross-validation is used up to {config.cv_max_queries:,} queries "
            f"(cv_max_queries), this data has {n_queries:,}"
        )
    if n_queries * n_docs > config.corpus_softmax_max:
        return (
            f"one dev split: cross-validation scores every query against all {n_docs:,} "
            "passages each epoch, more than corpus_softmax_max allows"
        )
    return None


#: The dev sample never shrinks below this many queries for the passage count's sake (its
#: standard error would swamp the gains the gate looks for).
MIN_DEV_QUERIES = 200


def max_dev_queries(config: TrainConfig, n_docs: int) -> int:
    """The most dev queries scored: ``dev_max_queries``, and no more than ``dev_max_scores``
    query x passage scores per scoring (at least :data:`MIN_DEV_QUERIES`)."""
    by_work = max(MIN_DEV_QUERIES, config.dev_max_scores // max(n_docs, 1))
    return min(config.dev_max_queries, by_work)
