"""The report's view model: what the page shows, typed and already formatted.

:func:`build_view` turns an :class:`~queryfit.api.EvaluationResult` and its
:class:`QueryDetails` into a :class:`ReportView`; the templates only place its values (and
escape them: queries and passages are text, never markup). Wording that depends on the data
(the advice, the data's name, the facts) is decided here, fixed prose lives in the templates.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from queryfit.console import json_default
from queryfit.report.details import TOP_PASSAGES, QueryDetails
from queryfit.report.figures import Figure, Training, result_figures, training_figures
from queryfit.report.plots import interval_chart

# Above this many queries the table keeps the ones that gained and lost most (half each).
MAX_TABLE_ROWS = 1000
# The data when neither a file nor a label names it.
_UNNAMED_DATA = "a dataset passed in Python (not read from a file)"


@dataclass(frozen=True)
class Tile:
    """One metric, base vs adapted, as the page prints it (values and points as text)."""

    metric: str
    base: str
    adapted: str
    delta: str
    low: str
    high: str
    tone: str  # gain / loss / neutral


@dataclass(frozen=True)
class MetricRow(Tile):
    p_value: str = ""
    word: str = ""
    headline: bool = False


@dataclass(frozen=True)
class CoverageRow(Tile):
    queries: str = ""


@dataclass(frozen=True)
class Coverage:
    note: str
    rows: list[CoverageRow]


@dataclass(frozen=True)
class HitSummary:
    """Where the relevant passage lands: first, and within the top ``k``."""

    first_adapted: str
    first_base: str
    k: int
    top_adapted: str
    top_base: str


@dataclass(frozen=True)
class Headline:
    verdict: str
    tone: str
    advice: str
    advice_kind: str  # deploy / keep / none (no advice: the test queries were training queries)
    overlap_warning: str | None
    identity: bool
    identity_decision: str
    queries: str
    passages: str
    metric: str
    base: str
    adapted: str
    one_relevant: bool
    hits: HitSummary | None
    tiles: list[Tile]
    rows: list[MetricRow]
    forest: Markup
    coverage: Coverage | None


@dataclass(frozen=True)
class PassageRef:
    """A passage as the table names it: an excerpt, where it came from, its id (secondary)."""

    id: str
    short_id: str
    excerpt: str
    source: str
    relevant: bool


@dataclass(frozen=True)
class QueryRow:
    query: str
    query_id: str
    before: int
    after: int
    change: int
    kind: str  # gain / loss / same
    relevant: list[PassageRef]
    top_base: list[PassageRef]
    top_adapted: list[PassageRef]


@dataclass(frozen=True)
class QueryTable:
    rows: list[QueryRow]
    total: int
    half: int | None  # set when only the biggest gains and losses are shown
    top: int
    one_relevant: bool


@dataclass(frozen=True)
class Part:
    """A piece of a fact: plain ``text``, ``code``, a muted ``note`` or a ``warning``."""

    text: str
    kind: str = "text"


@dataclass(frozen=True)
class Fact:
    label: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class ReportView:
    title: str
    version: str
    written: str
    model_id: str
    adapter_type: str
    article: str
    data_name: str
    headline: Headline
    plots: list[Figure]  # empty without per-query details
    training: Training | None
    queries: QueryTable | None
    facts: list[Fact]
    data_json: Markup


# Formatting


def _fmt(value: float) -> str:
    """Metric values as the CLI prints them."""
    return f"{value:.4f}"


def _pts(value: float) -> str:
    """A difference in points (x100), signed; never "-0.0"."""
    return f"{round(value * 100, 1) + 0.0:+.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n:,} " + (noun if n == 1 else plural or noun + "s")


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


def _article(word: str) -> str:
    """The article before an adapter type: "an identity", "a linear" (each said as spelled)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _sentence(text: str) -> str:
    """A clause as a sentence: first letter up, one full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


# Building the view


def _tile(d: Any) -> Tile:
    values = (_fmt(d.base), _fmt(d.adapted), _pts(d.delta), _pts(d.low), _pts(d.high))
    return Tile(d.metric, *values, tone=_tone(d))


def _headline(report: Any, details: QueryDetails | None) -> Headline:
    diffs = {d.metric: d for d in report.differences}
    head = diffs[report.headline]
    hits = None
    if details is not None and details.curves["hit@k"]["base"]:
        hit = details.curves["hit@k"]
        k = min(10, len(hit["base"]))
        hits = HitSummary(
            first_adapted=_pct(hit["adapted"][0]),
            first_base=_pct(hit["base"][0]),
            k=k,
            top_adapted=_pct(hit["adapted"][k - 1]),
            top_base=_pct(hit["base"][k - 1]),
        )
    words = {"gain": "better", "loss": "worse", "neutral": "no clear change"}
    rows = [
        MetricRow(
            **_tile(d).__dict__,
            p_value=f"{d.p_value:.3g}",
            word=words[_tone(d)],
            headline=d.metric == report.headline,
        )
        for d in report.differences
    ]
    forest = interval_chart(
        "intervals",
        [(d.metric, 100 * d.delta, 100 * d.low, 100 * d.high) for d in report.differences],
        title="Adapted minus base, 95% intervals",
        x_label="difference (points)",
        desc="Per metric, the adapted minus base difference with its 95% bootstrap interval.",
    )
    identity = report.adapter.get("type") == "identity"
    decision = details.training.decision if identity and details and details.training else ""
    return Headline(
        verdict=report.verdict,
        tone=_tone(head),
        advice=_sentence(report.advice),
        advice_kind="deploy" if report.deploy else "none" if report.overlap_warning else "keep",
        overlap_warning=_sentence(report.overlap_warning) if report.overlap_warning else None,
        identity=identity,
        identity_decision=decision,
        queries=f"{report.queries:,}",
        passages=f"{report.passages:,}",
        metric=report.headline,
        base=_fmt(head.base),
        adapted=_fmt(head.adapted),
        one_relevant=details.one_relevant_each if details is not None else True,
        hits=hits,
        tiles=[
            _tile(diffs[name])
            for name in dict.fromkeys([report.headline, "hit@1", "hit@10", "mrr@10"])
            if name in diffs
        ],
        rows=rows,
        forest=Markup(forest),
        coverage=_coverage(report),
    )


def _coverage(report: Any) -> Coverage | None:
    """Headline metric on test queries about passages training saw vs the rest (or why not)."""
    coverage = getattr(report, "coverage", None)
    if coverage is None:
        return None
    rows = [  # one row per group of queries, named by the group in the metric's place
        CoverageRow(
            **(_tile(group.difference(report.headline)).__dict__ | {"metric": group.name}),
            queries=f"{group.queries:,}",
        )
        for group in coverage.groups
    ]
    return Coverage(note=_sentence(coverage.note), rows=rows)


def _passage(doc_id: str, details: QueryDetails, relevant: set[str]) -> PassageRef:
    return PassageRef(
        id=doc_id,
        short_id=_short_id(doc_id),
        excerpt=details.passages.get(doc_id, ""),
        source=details.sources.get(doc_id, ""),
        relevant=doc_id in relevant,
    )


def _queries(details: QueryDetails) -> QueryTable:
    judged = np.flatnonzero(details.rank_base > 0)
    before = details.rank_base[judged].astype(np.float64)
    after = details.rank_adapted[judged].astype(np.float64)
    gain = 1.0 / after - 1.0 / before  # change in reciprocal rank: what MRR sees
    # Most helped first; among equal reciprocal-rank changes, the larger move first.
    order = np.lexsort((-(before - after), -gain))
    total, half = int(order.size), None
    if total > MAX_TABLE_ROWS:
        half = MAX_TABLE_ROWS // 2
        order = np.concatenate([order[:half], order[-half:]])
    rows = []
    for pos in order:
        i = int(judged[pos])
        b, a = int(details.rank_base[i]), int(details.rank_adapted[i])
        relevant = set(details.relevant[i])
        rows.append(
            QueryRow(
                query=details.queries[i],
                query_id=details.query_ids[i],
                before=b,
                after=a,
                change=b - a,
                kind="gain" if b > a else "loss" if b < a else "same",
                relevant=[_passage(d, details, relevant) for d in details.relevant[i][:2]],
                top_base=[_passage(d, details, relevant) for d in details.top_base[i]],
                top_adapted=[_passage(d, details, relevant) for d in details.top_adapted[i]],
            )
        )
    return QueryTable(rows, total, half, TOP_PASSAGES, details.one_relevant_each)


def _data_name(details: QueryDetails | None) -> str:
    """The evaluation data in a few words: its label, else its file name ("" if neither)."""
    if details is not None and details.data_label:
        return details.data_label
    if details is not None and details.data_source:
        return Path(details.data_source).name
    return ""


def _facts(report: Any, details: QueryDetails | None) -> list[Fact]:
    facts = details.training if details else None
    data = details.data if details else None
    settings = details.settings if details else {}
    config = facts.config if facts else {}
    out: list[Fact] = [Fact("base model", (Part(str(report.model_id), "code"),))]

    adapter = report.adapter
    parts = [Part(f"{adapter.get('type')}, {int(adapter.get('parameters') or 0):,} parameters")]
    bits = [
        f"{k} {config[k]}"
        for k in ("loss", "lr", "scale", "identity_penalty", "batch_size")
        if k in config
    ]
    if bits:
        parts.append(Part(f"({', '.join(bits)})", "note"))
    parts.append(Part(f"; {adapter.get('dim')}-dimensional queries"))
    out.append(Fact("adapter", tuple(parts)))

    if details is not None:
        label, source = details.data_label, details.data_source
        what = (
            f"{label}, saved as {source}" if label and source else label or source or _UNNAMED_DATA
        )
        out.append(
            Fact(
                "evaluated on",
                (
                    Part(
                        f"{what}: {report.queries:,} queries, {report.passages:,} passages; "
                        "fingerprint "
                    ),
                    Part(details.data_fingerprint, "code"),
                ),
            )
        )
    if data:
        pairs = f"{data.queries:,} pairs over {data.passages:,} passages"
        split = facts.split if facts else None
        if split and split.cv_folds:
            pairs += (
                f" ({split.cv_folds}-fold cross-validation: {split.train_queries:,} to train and "
                f"{split.dev_queries:,} to check per fold, then refit on all)"
            )
        elif split and split.dev_queries:
            pairs += (
                f" ({split.train_queries:,} to train, {split.dev_queries:,} to choose the number "
                "of epochs and gate shipping)"
            )
        out.append(Fact("trained on", (Part(f"{data.source or _UNNAMED_DATA}: {pairs}"),)))
        if data.fingerprint:
            parts = [Part(data.fingerprint, "code")]
            if details is not None and data.fingerprint == details.data_fingerprint:
                parts.append(
                    Part(
                        "(the same data as the evaluation: these figures are not held-out)",
                        "warning",
                    )
                )
            out.append(Fact("training data fingerprint", tuple(parts)))
    if facts:
        max_epochs = config.get("max_epochs")
        chosen = f"{_seconds(facts.seconds)}; chose epoch {facts.best_epoch}" + (
            f" of at most {max_epochs}" if max_epochs else ""
        )
        out.append(Fact("training", (Part(chosen),)))
        if facts.decision:
            out.append(Fact("decision", (Part(facts.decision),)))
        if facts.dev.base is not None and facts.dev.adapted is not None:
            gate = (
                f"{facts.dev.metric} {facts.dev.base:.4f} (base) → "
                f"{facts.dev.adapted:.4f} (best epoch)"
            )
            out.append(Fact("dev gate", (Part(gate),)))
    calls = (
        f"evaluation: {_count(report.model_calls, 'model call')}, "
        f"{_count(report.texts_from_store, 'text')} served from the store"
    )
    if facts:
        calls += (
            f"; training: {_count(facts.embedding.model_calls, 'model call')}, "
            f"{_count(facts.embedding.texts_from_store, 'text')} served from the store"
        )
    out.append(Fact("model calls", (Part(calls),)))
    if settings:
        stats = (
            f"paired bootstrap, {int(settings.get('n_resamples') or 0):,} resamples, "
            f"seed {settings.get('seed')}; headline metric {report.headline}"
        )
        out.append(Fact("statistics", (Part(stats),)))
    return out


def _json_for_script(data: Any) -> Markup:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as ``\\u`` escapes (as Jinja's
    ``tojson``), so no text can close the element; ``JSON.parse`` reads them back unchanged."""
    text = json.dumps(data, default=json_default, ensure_ascii=False)
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, code)
    return Markup(text)


def build_view(
    report: Any, *, title: str | None = None, path: str | Path | None = None
) -> ReportView:
    """The report's :class:`ReportView` for an :class:`~queryfit.api.EvaluationResult`."""
    from queryfit import __version__

    details: QueryDetails | None = getattr(report, "details", None)
    name = _data_name(details) or _count(report.queries, "query", "queries")
    adapter_type = str(report.adapter.get("type"))
    written = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ReportView(
        title=title or f"queryfit report: {report.model_id} + {adapter_type} adapter on {name}",
        version=__version__,
        written=written,
        model_id=str(report.model_id),
        adapter_type=adapter_type,
        article=_article(adapter_type),
        data_name=name,
        headline=_headline(report, details),
        plots=result_figures(details) if details is not None else [],
        training=training_figures(details.training) if details is not None else None,
        queries=_queries(details) if details is not None else None,
        facts=_facts(report, details),
        data_json=_json_for_script(
            report.to_dict() | ({"report_path": str(path)} if path is not None else {})
        ),
    )
