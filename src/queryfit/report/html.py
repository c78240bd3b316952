"""The HTML report: one self-contained file that shows whether the adapter helps, and where.

Sections, top to bottom:

* **Headline**: the verdict sentence on the headline metric, base vs adapted on every metric with
  paired-bootstrap 95% intervals (table and forest plot), and a plain-words summary; when
  ``adapter.json`` records the training passages, the headline metric on test queries about
  those passages vs the rest (see :mod:`queryfit.evaluation.coverage`).
* **Plots**: hit@k and recall@k for k = 1..100, base vs adapted; how far the relevant passage
  moved per query; training and dev loss and the dev metric per epoch; the learning curve when
  the adapter's ``adapter.json`` records one.
* **Queries**: every query (or the ones that gained and lost most, on big sets) with the rank of
  its relevant passage before and after and the opening of the top passages; sortable and
  searchable.
* **Run facts**: base model, adapter type and size, data fingerprints, pairs used, training
  time, model calls made vs texts served from the embedding store.

Headline and plots are plain HTML and inline SVG (see :mod:`queryfit.report.plots`), so they
render without JavaScript; a few lines of script only sort and filter the query table. Nothing is
fetched from the network.

The per-query material comes from :class:`QueryDetails`, which :func:`queryfit.api.evaluate`
builds with :func:`query_details` and attaches to its :class:`~queryfit.api.EvaluationResult`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from queryfit import _io
from queryfit.adapters.record import TrainingFacts
from queryfit.console import json_default
from queryfit.errors import QueryfitError
from queryfit.report.details import TOP_PASSAGES, QueryDetails
from queryfit.report.plots import (
    ACCENT_COLOR,
    ADAPTED_COLOR,
    BASE_COLOR,
    GAIN_COLOR,
    LOSS_COLOR,
    NEUTRAL_COLOR,
    Series,
    bar_chart,
    interval_chart,
    line_chart,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

# Above this many queries the table keeps the ones that gained and lost most (half each).
MAX_TABLE_ROWS = 1000
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


class ReportError(QueryfitError):
    """The report cannot be written (no per-query details, or an unwritable path)."""


# --------------------------------------------------------------------------------------------
# Rendering


def _fmt(value: float) -> str:
    """Metric values as the CLI prints them."""
    return f"{value:.4f}"


def _pts(value: float) -> str:
    """A difference in points (x100), signed; never "-0.0"."""
    return f"{round(value * 100, 1) + 0.0:+.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _tone(diff: Any) -> str:
    return "gain" if diff.low > 0 else "loss" if diff.high < 0 else "neutral"


def _short_id(doc_id: str, keep: int = 14) -> str:
    return doc_id if len(doc_id) <= keep else doc_id[: keep - 1] + "…"


def _seconds(value: float | None) -> str:
    if value is None:
        return "not recorded"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _headline(report: Any, details: QueryDetails | None) -> str:
    diffs = {d.metric: d for d in report.differences}
    head = diffs[report.headline]
    tone = _tone(head)
    parts = ['<section id="headline" aria-labelledby="headline-title">']
    parts.append('<h2 id="headline-title">Does the adapter help?</h2>')
    parts.append(
        f'<p class="verdict {tone}" id="verdict" data-tone="{tone}">{escape(report.verdict)}</p>'
    )
    lede = [
        f"On <b>{report.queries:,}</b> queries over <b>{report.passages:,}</b> passages, "
        f"{escape(report.headline)} goes from <b>{_fmt(head.base)}</b> with the base model to "
        f"<b>{_fmt(head.adapted)}</b> with the adapter"
    ]
    if tone == "gain":
        lede.append(" &mdash; a gain the 95% interval says is real.")
    elif tone == "loss":
        lede.append(" &mdash; the adapter makes retrieval <b>worse</b>; do not ship it.")
    else:
        lede.append(" &mdash; the 95% interval includes zero, so no difference is established.")
    if details is not None and details.curves["hit@k"]["base"]:
        hit = details.curves["hit@k"]
        k10 = min(10, len(hit["base"])) - 1
        lede.append(
            f" The relevant passage comes first for {_pct(hit['adapted'][0])} of queries "
            f"(base {_pct(hit['base'][0])}) and is in the top {k10 + 1} for "
            f"{_pct(hit['adapted'][k10])} (base {_pct(hit['base'][k10])})."
        )
    parts.append(f'<p class="lede">{"".join(lede)}</p>')
    if report.adapter.get("type") == "identity":
        decision = details.training.decision if details and details.training else ""
        parts.append(
            '<p class="banner" id="identity-note"><b>Identity adapter.</b> Training found no '
            "epoch that beat the base model on its dev split, so it shipped the adapter that "
            "changes nothing; retrieval is the base model's."
            + (f" Training's decision: <i>{escape(decision)}</i>." if decision else "")
            + "</p>"
        )

    tiles = []
    for name in dict.fromkeys([report.headline, "hit@1", "hit@10", "mrr@10"]):
        if name not in diffs:
            continue
        d = diffs[name]
        tiles.append(
            f'<div class="tile" data-metric="{escape(name)}"><div class="name">{escape(name)}'
            f'</div><div class="vals"><span class="base">{_fmt(d.base)}</span> &rarr; '
            f'<span class="adapted">{_fmt(d.adapted)}</span></div>'
            f'<div class="delta {_tone(d)}-text">{_pts(d.delta)} pts, 95% CI '
            f"[{_pts(d.low)}, {_pts(d.high)}]</div></div>"
        )
    parts.append(f'<div class="tiles">{"".join(tiles)}</div>')

    rows = []
    for d in report.differences:
        word = {"gain": "better", "loss": "worse", "neutral": "no clear change"}[_tone(d)]
        cls = ' class="headline-row"' if d.metric == report.headline else ""
        rows.append(
            f'<tr{cls} data-metric="{escape(d.metric)}"><td>{escape(d.metric)}</td>'
            f'<td class="base">{_fmt(d.base)}</td><td class="adapted">{_fmt(d.adapted)}</td>'
            f'<td class="delta">{_pts(d.delta)}</td>'
            f'<td class="ci">[{_pts(d.low)}, {_pts(d.high)}]</td>'
            f'<td class="p">{d.p_value:.3g}</td>'
            f'<td class="{_tone(d)}-text">{word}</td></tr>'
        )
    table = (
        '<table class="metrics" id="metrics-table"><thead><tr><th>metric</th><th>base</th>'
        "<th>adapted</th><th>&Delta; (pts)</th><th>95% CI (pts)</th><th>p</th><th></th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">&Delta; and intervals are adapted &minus; base in points (x100), from a '
        "paired bootstrap over queries; a change counts when its interval excludes zero.</p>"
    )
    forest = interval_chart(
        "intervals",
        [(d.metric, 100 * d.delta, 100 * d.low, 100 * d.high) for d in report.differences],
        title="Adapted minus base, 95% intervals",
        x_label="difference (points)",
        desc="Per metric, the adapted minus base difference with its 95% bootstrap interval.",
    )
    parts.append(
        f'<div class="headline-grid"><div>{table}</div><figure id="fig-intervals">{forest}'
        "<figcaption>Green: the whole interval is above zero; red: below; grey: it straddles "
        "zero.</figcaption></figure></div>"
    )
    parts.append(_coverage_table(report))
    parts.append("</section>")
    return "\n".join(parts)


def _coverage_table(report: Any) -> str:
    """Headline metric on test queries about passages training saw vs the rest (or why not).

    Empty for adapters that recorded no training passages.
    """
    coverage = getattr(report, "coverage", None)
    if coverage is None:
        return ""
    note = f'<p class="note" id="coverage-note">{escape(coverage.note)}.</p>'
    if not coverage.groups:
        return f'<div id="coverage">{note}</div>'
    rows = []
    for group in coverage.groups:
        d = group.difference(report.headline)
        rows.append(
            f'<tr data-group="{escape(group.name)}"><td>{escape(group.name)}</td>'
            f"<td>{group.queries:,}</td>"
            f'<td class="base">{_fmt(d.base)}</td><td class="adapted">{_fmt(d.adapted)}</td>'
            f'<td class="delta">{_pts(d.delta)}</td>'
            f'<td class="ci {_tone(d)}-text">[{_pts(d.low)}, {_pts(d.high)}]</td></tr>'
        )
    return (
        f'<div id="coverage"><h3>By training coverage ({escape(report.headline)})</h3>'
        '<table class="metrics" id="coverage-table"><thead><tr><th>test queries</th><th>n</th>'
        "<th>base</th><th>adapted</th><th>&Delta; (pts)</th><th>95% CI (pts)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
        '<p class="note">Covered: every relevant passage of the query was in a training pair, '
        "so the adapter saw it; uncovered: at least one was not.</p></div>"
    )


def _curve_range(values: Sequence[float]) -> tuple[float, float]:
    """y-axis for a hit@k / recall@k curve: from a round value below the data up to 1."""
    low = min(values) if values else 0.0
    step = 0.1 if low > 0.2 else 0.2
    return max(0.0, math.floor((low - 0.02) / step) * step), 1.0


def _figure(fig_id: str, svg: str, caption: str) -> str:
    return f'<figure id="{fig_id}">{svg}<figcaption>{caption}</figcaption></figure>'


def _empty_figure(fig_id: str, text: str) -> str:
    return f'<figure id="{fig_id}" class="empty"><p>{text}</p></figure>'


def _move_counts(details: QueryDetails) -> tuple[np.ndarray, np.ndarray]:
    judged = details.rank_base > 0
    moved = details.rank_base[judged] - details.rank_adapted[judged]
    counts = np.array(
        [int(((moved >= lo) & (moved <= hi)).sum()) for _, lo, hi in _MOVE_BUCKETS],
        dtype=np.int64,
    )
    return moved, counts


def _plots(report: Any, details: QueryDetails | None) -> str:
    parts = ['<section id="plots" aria-labelledby="plots-title">']
    parts.append('<h2 id="plots-title">Where it helps</h2>')
    if details is None:
        parts.append("<p class='note'>No per-query details were collected for this report.</p>")
        parts.append("</section>")
        return "\n".join(parts)
    figures = []
    for name, label in (("hit@k", "hit@k"), ("recall@k", "recall@k")):
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
        what = (
            "queries whose relevant passage is within the top k"
            if name == "hit@k"
            else "relevant passages found within the top k, averaged over queries"
        )
        figures.append(_figure(f"fig-{name.replace('@k', '')}", svg, f"Share of {what}."))

    moved, counts = _move_counts(details)
    up, down = int((moved > 0).sum()), int((moved < 0).sum())
    same = int((moved == 0).sum())
    colors = [LOSS_COLOR] * 4 + [NEUTRAL_COLOR] + [GAIN_COLOR] * 4
    svg = bar_chart(
        "rank-changes",
        [label for label, _, _ in _MOVE_BUCKETS],
        counts.tolist(),
        colors,
        title="How far the relevant passage moved",
        x_label="rank change per query (up = closer to the top)",
        y_label="queries",
        desc=f"{up} queries moved up, {down} moved down, {same} did not move.",
    )
    skipped = int((details.rank_base <= 0).sum())
    note = f" {skipped} queries without a relevant passage in the corpus are left out." * bool(
        skipped
    )
    figures.append(
        _figure(
            "fig-rank-changes",
            f'<div class="moves" id="moves"><span class="gain-text">&#9650; up <b id="moved-up">'
            f'{up:,}</b></span><span class="loss-text">&#9660; down <b id="moved-down">{down:,}'
            f'</b></span><span class="neutral-text">&#9644; same <b id="moved-same">{same:,}'
            f"</b></span></div>{svg}",
            "Per query, the rank of its best-placed relevant passage with the base model minus "
            f"the rank with the adapter, over all passages (not just the top 100).{note}",
        )
    )
    parts.append(f'<div class="grid">{"".join(figures)}</div>')

    parts.append('<h3 id="training-title">Training</h3>')
    parts.append(f'<div class="grid">{_training_figures(details.training)}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def _training_figures(training: TrainingFacts | None) -> str:
    history = [h for h in training.history if isinstance(h, Mapping)] if training else []
    out = []
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    train_loss = [h.get("train_loss") for h in history]
    dev_loss = [h.get("dev_loss") for h in history]
    dev_score = [h.get("dev_score") for h in history]
    best = training.best_epoch if training else 0
    marks = [(best, f"chosen: {best}")] if best > 0 else []
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
        out.append(
            _figure(
                "fig-loss",
                svg,
                "Epoch 0 is the untrained (identity) adapter. A dev loss that turns up while "
                "the training loss keeps falling is overfitting.",
            )
        )
    else:
        out.append(
            _empty_figure(
                "fig-loss",
                "No per-epoch history in this adapter's adapter.json, so no loss curve.",
            )
        )
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
        out.append(
            _figure(
                "fig-dev-score",
                svg,
                "The dev split chooses the epoch count and gates shipping: the adapter ships "
                "only if it beats the base model here.",
            )
        )
    elif history:
        out.append(
            _empty_figure(
                "fig-dev-score", "Trained without a dev split, so there is no dev metric to plot."
            )
        )
    return "".join(out)


def _query_table(details: QueryDetails | None) -> str:
    parts = ['<section id="queries" aria-labelledby="queries-title">']
    parts.append('<h2 id="queries-title">Queries that gained and lost most</h2>')
    if details is None:
        parts.append("<p class='note'>No per-query details were collected.</p></section>")
        return "\n".join(parts)
    judged = np.flatnonzero(details.rank_base > 0)
    before = details.rank_base[judged].astype(np.float64)
    after = details.rank_adapted[judged].astype(np.float64)
    gain = 1.0 / after - 1.0 / before  # change in reciprocal rank: what MRR sees
    # Most helped first; among equal reciprocal-rank changes, the larger move first.
    order = np.lexsort((-(before - after), -gain))
    total = order.size
    if total > MAX_TABLE_ROWS:
        half = MAX_TABLE_ROWS // 2
        order = np.concatenate([order[:half], order[-half:]])
        parts.append(
            f'<p class="note">{total:,} queries; showing the {half:,} that gained most and the '
            f"{half:,} that lost most.</p>"
        )
    parts.append(
        '<div class="controls" id="query-controls" hidden>'
        '<input type="search" id="query-search" placeholder="Search queries and passages…" '
        'aria-label="Search queries and passages">'
        '<button type="button" data-filter="all" aria-pressed="true">all</button>'
        '<button type="button" data-filter="gain" aria-pressed="false">moved up</button>'
        '<button type="button" data-filter="loss" aria-pressed="false">moved down</button>'
        '<button type="button" data-filter="same" aria-pressed="false">unchanged</button>'
        '<span class="note" id="query-count"></span></div>'
        '<p class="note">Ordered by how much the adapter helped (change in 1/rank of the '
        "relevant passage), biggest gains first. Click a column header to sort. "
        "&#10003; marks a relevant passage.</p>"
    )
    head = (
        '<colgroup><col class="c-query"><col class="c-num"><col class="c-num">'
        '<col class="c-moved"><col class="c-top"><col class="c-top"></colgroup>'
        "<thead><tr>"
        '<th data-type="text" scope="col">query</th>'
        '<th data-type="number" scope="col" title="rank of the relevant passage, base model">'
        "before</th>"
        '<th data-type="number" scope="col" title="rank of the relevant passage, adapted">'
        "after</th>"
        '<th data-type="number" scope="col" title="before minus after: positive moved up">'
        "moved</th>"
        f'<th scope="col">top {TOP_PASSAGES}, base</th>'
        f'<th scope="col">top {TOP_PASSAGES}, adapted</th>'
        "</tr></thead>"
    )
    rows = []
    for pos in order:
        i = int(judged[pos])
        b, a = int(details.rank_base[i]), int(details.rank_adapted[i])
        change = b - a
        kind = "gain" if change > 0 else "loss" if change < 0 else "same"
        relevant = set(details.relevant[i])
        rel_text = "".join(
            f'<div class="relq">relevant <span class="pid" title="{escape(d)}">'
            f"{escape(_short_id(d))}</span>: {escape(details.passages.get(d, ''))}</div>"
            for d in details.relevant[i][:2]
        )
        arrow = "&#9650;" if change > 0 else "&#9660;" if change < 0 else "&ndash;"
        rows.append(
            f'<tr class="{kind}" data-change="{kind}" '
            f'data-query-id="{escape(details.query_ids[i])}">'
            f'<td class="q" data-sort="{escape(details.queries[i])}">{escape(details.queries[i])}'
            f'<div class="qid">{escape(details.query_ids[i])}</div>{rel_text}</td>'
            f'<td class="num before" data-sort="{b}">{b:,}</td>'
            f'<td class="num after" data-sort="{a}">{a:,}</td>'
            f'<td class="num moved" data-sort="{change}">{arrow} {abs(change):,}</td>'
            f"<td>{_tops(details.top_base[i], relevant, details.passages)}</td>"
            f"<td>{_tops(details.top_adapted[i], relevant, details.passages)}</td></tr>"
        )
    parts.append(
        '<div class="table-wrap"><table class="queries" id="query-table">'
        f"{head}<tbody>{''.join(rows)}</tbody></table></div>"
    )
    parts.append("</section>")
    return "\n".join(parts)


def _tops(ids: Sequence[str], relevant: set[str], passages: Mapping[str, str]) -> str:
    items = []
    for d in ids:
        mark = "&#10003; " if d in relevant else ""
        cls = ' class="rel"' if d in relevant else ""
        items.append(
            f'<li{cls}>{mark}<span class="pid" title="{escape(d)}">{escape(_short_id(d))}</span> '
            f"{escape(passages.get(d, ''))}</li>"
        )
    return f'<ol class="tops">{"".join(items)}</ol>'


def _facts(report: Any, details: QueryDetails | None) -> str:
    facts = details.training if details else None
    data = details.data if details else None
    settings = details.settings if details else {}
    training = facts.config if facts else {}
    rows: list[tuple[str, str]] = []
    rows.append(("base model", f"<code>{escape(str(report.model_id))}</code>"))
    adapter = report.adapter
    shape = f"{adapter.get('type')}, {int(adapter.get('parameters') or 0):,} parameters"
    if training:
        bits = [
            f"{k} {training[k]}"
            for k in ("loss", "lr", "scale", "identity_penalty", "batch_size")
            if k in training
        ]
        if bits:
            shape += f" <span class='note'>({escape(', '.join(bits))})</span>"
    rows.append(("adapter", f"{shape}; {adapter.get('dim')}-dimensional queries"))
    if details is not None:
        source = escape(details.data_source) if details.data_source else "in-memory dataset"
        rows.append(
            (
                "evaluated on",
                f"{source}: {report.queries:,} queries, {report.passages:,} passages; "
                f"fingerprint <code>{escape(details.data_fingerprint)}</code>",
            )
        )
    if data:
        pairs = f"{data.queries:,} pairs over {data.passages:,} passages"
        split = facts.split if facts else None
        if split and split.cv_folds:
            pairs += (
                f" ({split.cv_folds}-fold cross-validation: {split.train_queries:,} to train and "
                f"{split.dev_queries:,} to check per fold, then a refit on all)"
            )
        elif split and split.dev_queries:
            pairs += (
                f" ({split.train_queries:,} to train, {split.dev_queries:,} to choose epochs "
                "and gate)"
            )
        rows.append(("trained on", f"{escape(data.source or 'in-memory dataset')}: {pairs}"))
        if data.fingerprint:
            same = (
                " <b class='loss-text'>(same data as the evaluation: these numbers are not "
                "held-out)</b>"
                if details is not None and data.fingerprint == details.data_fingerprint
                else ""
            )
            rows.append(
                ("training data fingerprint", f"<code>{escape(data.fingerprint)}</code>{same}")
            )
    if facts:
        max_epochs = training.get("max_epochs")
        rows.append(
            (
                "training",
                f"{_seconds(facts.seconds)}; chose epoch {facts.best_epoch}"
                + (f" of at most {max_epochs}" if max_epochs else ""),
            )
        )
        if facts.decision:
            rows.append(("decision", escape(facts.decision)))
        if facts.dev.base is not None and facts.dev.adapted is not None:
            rows.append(
                (
                    "dev gate",
                    f"{escape(facts.dev.metric)} {facts.dev.base:.4f} (base) &rarr; "
                    f"{facts.dev.adapted:.4f} (best epoch)",
                )
            )
    calls = (
        f"evaluation: {_count(report.model_calls, 'model call')}, "
        f"{_count(report.texts_from_store, 'text')} served from the store"
    )
    if facts:
        calls += (
            f"; training: {_count(facts.embedding.model_calls, 'model call')}, "
            f"{_count(facts.embedding.texts_from_store, 'text')} served from the store"
        )
    rows.append(("model calls", calls))
    if settings:
        rows.append(
            (
                "statistics",
                f"paired bootstrap, {int(settings.get('n_resamples') or 0):,} resamples, "
                f"seed {settings.get('seed')}; headline metric {escape(report.headline)}",
            )
        )
    body = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        '<section id="facts" aria-labelledby="facts-title"><h2 id="facts-title">Run facts</h2>'
        f'<dl class="facts" id="facts-list">{body}</dl></section>'
    )


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, default=json_default, ensure_ascii=False)
    # Nothing inside may close the <script> element or open a comment.
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_report(report: Any, *, title: str | None = None, path: str | Path | None = None) -> str:
    """The report for an :class:`~queryfit.api.EvaluationResult` as one HTML document.

    ``path`` is where it will be written; the embedded evaluation JSON records it.
    """
    from queryfit import __version__

    details: QueryDetails | None = getattr(report, "details", None)
    source = details.data_source if details and details.data_source else None
    name = Path(source).name if source else f"{report.queries} queries"
    adapter_type = report.adapter.get("type")
    title = title or f"queryfit report: {report.model_id} + {adapter_type} adapter on {name}"
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        '<header class="top"><h1>queryfit report</h1>'
        f"<p>{escape(str(report.model_id))} with a {escape(str(report.adapter.get('type')))} "
        f"query adapter, evaluated on {escape(name)} &middot; {now}</p>"
        '<nav class="sections" aria-label="sections"><a href="#headline">headline</a>'
        '<a href="#plots">plots</a><a href="#training-title">training</a>'
        '<a href="#queries">queries</a><a href="#facts">run facts</a></nav></header>'
    )
    body = "\n".join(
        [
            header,
            "<main>",
            _headline(report, details),
            _plots(report, details),
            _query_table(details),
            _facts(report, details),
            f"<footer>Written by queryfit {escape(__version__)} on {now}. One file, no network "
            "needed; the evaluation's numbers are embedded as JSON in "
            "<code>#queryfit-evaluation</code>.</footer>",
            "</main>",
        ]
    )
    template = Template(
        resources.files("queryfit.report").joinpath("templates/report.html").read_text("utf-8")
    )
    return template.substitute(
        title=escape(title),
        version=escape(__version__),
        body=body,
        data_json=_json_for_script(
            report.to_dict() | ({"report_path": str(path)} if path is not None else {})
        ),
    )


def check_report_path(path: str | Path) -> Path:
    """Refuse a report path that cannot work (a folder, not ``.html``) before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise ReportError(f"cannot write the report to {path}: it is a folder; give a file name")
    if path.suffix.lower() not in (".html", ".htm"):
        raise ReportError(
            f"report path {path} should end in .html so a browser opens it, e.g. report.html"
        )
    if path.parent.exists() and not path.parent.is_dir():
        raise ReportError(f"cannot write the report to {path}: {path.parent} is a file")
    return path


def write_report(report: Any, path: str | Path, *, title: str | None = None) -> Path:
    """Write the HTML report for ``report`` to ``path`` (atomically) and return the path.

    ``report`` is an :class:`~queryfit.api.EvaluationResult` from :func:`queryfit.api.evaluate`,
    which collects the per-query details the plots and the query table need.
    """
    path = check_report_path(path)
    html = render_report(report, title=title, path=path)
    try:
        _io.write_text(path, html)
    except OSError as exc:
        raise ReportError(f"cannot write the report to {path}: {exc.strerror or exc}") from exc
    return path
