"""The report's figures: inline SVG charts (:mod:`queryfit.report.plots`) with their captions.

Only charts with something to draw: a missing training history or dev split becomes one
sentence, and hit@k and recall@k, equal when each query has one relevant passage, one chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from markupsafe import Markup

from queryfit.adapters.record import TrainingFacts
from queryfit.report.details import QueryDetails
from queryfit.report.plots import (
    ACCENT_COLOR,
    ADAPTED_COLOR,
    BASE_COLOR,
    GAIN_COLOR,
    LOSS_COLOR,
    NEUTRAL_COLOR,
    Series,
    bar_chart,
    line_chart,
)

# Rank-change buckets for the distribution plot: (label, low, high) on before - after.
_MOVE_BUCKETS = (
    ("down >100", -math.inf, -101),
    ("down 11-100", -100, -11),
    ("down 2-10", -10, -2),
    ("down 1", -1, -1),
    ("same", 0, 0),
    ("up 1", 1, 1),
    ("up 2-10", 2, 10),
    ("up 11-100", 11, 100),
    ("up >100", 101, math.inf),
)


@dataclass(frozen=True)
class Moves:
    """How many queries' relevant passage moved up, down, or stayed (formatted counts)."""

    up: str
    down: str
    same: str


@dataclass(frozen=True)
class Figure:
    """One chart: its element id, the SVG (markup, built escaped), and a caption (text)."""

    id: str
    svg: Markup
    caption: str
    moves: Moves | None = None


@dataclass(frozen=True)
class Training:
    """The training section: its charts, and a sentence for any chart that cannot be drawn."""

    figures: list[Figure]
    note: str  # one sentence when a curve cannot be drawn; no empty boxes


def _curve_range(values: Sequence[float]) -> tuple[float, float]:
    """y-axis for a hit@k / recall@k curve: from a round value below the data up to 1."""
    low = min(values) if values else 0.0
    step = 0.1 if low > 0.2 else 0.2
    return max(0.0, math.floor((low - 0.02) / step) * step), 1.0


def _move_counts(details: QueryDetails) -> tuple[np.ndarray, np.ndarray]:
    judged = details.rank_base > 0
    moved = details.rank_base[judged] - details.rank_adapted[judged]
    counts = np.array(
        [int(((moved >= lo) & (moved <= hi)).sum()) for _, lo, hi in _MOVE_BUCKETS],
        dtype=np.int64,
    )
    return moved, counts


def _curve_figure(details: QueryDetails, name: str, label: str, caption: str) -> Figure:
    curve = details.curves[name]
    ks = list(range(1, len(curve["base"]) + 1))
    svg = line_chart(
        name.replace("@k", "-curve"),
        [
            Series("base", ks, curve["base"], BASE_COLOR, dashed=True, fmt="{:.3f}"),
            Series("adapted", ks, curve["adapted"], ADAPTED_COLOR, fmt="{:.3f}"),
        ],
        title=f"{label}, k = 1..{len(ks)}",
        x_label="k (passages read, log scale)",
        y_label=label,
        x_log=True,
        y_range=_curve_range(curve["base"] + curve["adapted"]),
        desc=f"{label} for every cut-off k from 1 to {len(ks)}, base and adapted.",
    )
    return Figure(f"fig-{name.replace('@k', '')}", Markup(svg), caption)


def result_figures(details: QueryDetails) -> list[Figure]:
    """hit@k (and recall@k when it differs) and how far each relevant passage moved."""
    if details.one_relevant_each:
        # One relevant passage per query: found within k (recall) is within k (hit).
        figures = [
            _curve_figure(
                details,
                "hit@k",
                "hit@k = recall@k",
                "hit@k (= recall@k: one relevant passage per query): the share of queries "
                "whose relevant passage is within the top k.",
            )
        ]
    else:
        figures = [
            _curve_figure(
                details,
                "hit@k",
                "hit@k",
                "hit@k: the share of queries with a relevant passage within the top k.",
            ),
            _curve_figure(
                details,
                "recall@k",
                "recall@k",
                "recall@k: the share of each query's relevant passages within the top k, "
                "averaged over queries.",
            ),
        ]
    moved, counts = _move_counts(details)
    up, down = int((moved > 0).sum()), int((moved < 0).sum())
    same = int((moved == 0).sum())
    svg = bar_chart(
        "rank-changes",
        [label for label, _, _ in _MOVE_BUCKETS],
        counts.tolist(),
        [LOSS_COLOR] * 4 + [NEUTRAL_COLOR] + [GAIN_COLOR] * 4,
        title="How far the relevant passage moved",
        x_label="rank change per query (up = closer to the top)",
        y_label="queries",
        desc=f"{up} queries moved up, {down} moved down, {same} did not move.",
    )
    skipped = int((details.rank_base <= 0).sum())
    caption = (
        "Per query, the rank of its best-placed relevant passage with the base model minus its "
        "rank with the adapter, over all passages (not just the top 100)."
    )
    if skipped:
        queries = "query" if skipped == 1 else "queries"
        caption += f" Left out: {skipped:,} {queries} without a relevant passage in the corpus."
    figures.append(
        Figure("fig-rank-changes", Markup(svg), caption, Moves(f"{up:,}", f"{down:,}", f"{same:,}"))
    )
    return figures


def training_figures(training: TrainingFacts | None) -> Training:
    """Loss and dev metric per epoch; a sentence instead of a chart that has nothing to draw."""
    history = [h for h in training.history if isinstance(h, Mapping)] if training else []
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    train_loss = [h.get("train_loss") for h in history]
    dev_loss = [h.get("dev_loss") for h in history]
    dev_score = [h.get("dev_score") for h in history]
    best = training.best_epoch if training else 0
    marks = [(best, f"chosen: {best}")] if best > 0 else []
    figures: list[Figure] = []
    notes: list[str] = []
    if any(v is not None for v in train_loss + dev_loss):
        series = [Series("train loss", epochs, train_loss, ADAPTED_COLOR, markers=True)]
        if any(v is not None for v in dev_loss):
            series.append(Series("dev loss", epochs, dev_loss, ACCENT_COLOR, markers=True))
        svg = line_chart(
            "loss",
            series,
            title="Loss per epoch",
            x_label="epoch",
            y_label="loss",
            marks=marks,
            desc="Training loss and dev loss after each epoch.",
        )
        figures.append(
            Figure(
                "fig-loss",
                Markup(svg),
                "Epoch 0 is the untrained (identity) adapter. A dev loss that turns up while the "
                "training loss keeps falling is overfitting.",
            )
        )
    else:
        notes.append("The adapter records no per-epoch history, so there are no training curves.")
    metric = training.dev.metric if training else "dev"
    if any(v is not None for v in dev_score):
        series = [Series(f"dev {metric}", epochs, dev_score, ADAPTED_COLOR, markers=True)]
        base = training.dev.base if training else None
        if base is None:
            base = next((v for v in dev_score if v is not None), None)
        if base is not None:
            series.append(Series("base model", epochs, [base] * len(epochs), BASE_COLOR, True))
        svg = line_chart(
            "dev-score",
            series,
            title=f"Dev {metric} per epoch",
            x_label="epoch",
            y_label=metric,
            marks=marks,
            desc=f"The held-out dev {metric} after each epoch, against the base model.",
        )
        figures.append(
            Figure(
                "fig-dev-score",
                Markup(svg),
                "The dev split chooses the number of epochs and gates shipping: the adapter "
                "ships only if it beats the base model here.",
            )
        )
    elif history:
        notes.append("Training had no dev split, so there is no dev metric to plot.")
    return Training(figures, " ".join(notes))
