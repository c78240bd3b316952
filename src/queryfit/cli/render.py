"""How results are printed: comparison tables, the coverage split, the generation summary."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from queryfit.cli.app import err, out


def comparison_table(report: Any, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("metric", "base", "adapted", "Δ (pts)", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("metric", "") else "right")
    for d in report.differences:
        table.add_row(
            d.metric,
            f"{d.base:.4f}",
            f"{d.adapted:.4f}",
            f"{100 * d.delta:+.1f}",
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            mark(d),
        )
    return table


def mark(d: Any) -> str:
    """significant / worse / n.s. for one Difference, coloured."""
    if d.significant:
        return "[green]significant[/]" if d.delta > 0 else "[red]worse[/]"
    return "[dim]n.s.[/]"


def print_coverage(report: Any) -> None:
    """The headline metric on covered vs uncovered test queries, or the line saying why not.

    Covered: every relevant passage was in a training pair. Nothing for older adapters.
    """
    coverage = report.coverage
    if coverage is None:
        return
    if not coverage.groups:
        out.print(f"coverage: {coverage.note}", highlight=False)
        return
    table = Table(
        title=f"by training coverage: {report.headline} (passages in the training pairs or not)",
        title_justify="left",
    )
    for column in ("test queries", "n", "base", "adapted", "Δ (pts)", "95% CI", ""):
        table.add_column(column, justify="left" if column in ("test queries", "") else "right")
    for group in coverage.groups:
        d = group.difference(report.headline)
        table.add_row(
            group.name,
            str(group.queries),
            f"{d.base:.4f}",
            f"{d.adapted:.4f}",
            f"{100 * d.delta:+.1f}",
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
            mark(d),
        )
    out.print(table)


def print_generation(report: Any) -> None:
    docs, stats = report.documents or {}, report.stats
    if "index" in docs:  # --index: the index's own passages, no files, no chunking
        sampled = f", {docs['passages']} drawn at random" if docs.get("sample") else ""
        out.print(
            f"read {docs['passages_in_index']} passages from {docs['index']}{sampled}",
            highlight=False,
            soft_wrap=True,
        )
    elif docs:
        skipped = docs.get("skipped") or []
        note = (
            f" ({len(skipped)} skipped: "
            + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            + (" ..." if len(skipped) > 3 else "")
            + ")"
            if skipped
            else ""
        )
        chunking = report.chunking or {}
        out.print(
            f"read {docs['files_read']} files{note}: {len(report.passages)} passages of at most "
            f"{chunking.get('max_tokens')} tokens ({chunking.get('tokenizer')})",
            highlight=False,
            soft_wrap=True,
        )
    retries = f", {stats.retries} retries" if stats.retries else ""
    limited = f", {stats.rate_limited} rate-limited" if stats.rate_limited else ""
    out.print(
        f"{report.generator}: {stats.generated} passages asked, {stats.from_journal} from the "
        f"journal, {stats.failed} failed; {stats.requests} requests{retries}{limited}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"questions: {report.filters.summary()}", highlight=False, soft_wrap=True)
    if stats.failed:
        reasons = ", ".join(f"{k} x{v}" for k, v in stats.failures.items())
        err.print(
            f"[yellow]warning:[/] {stats.failed} passages got no questions ({reasons}); rerun "
            "the same command to retry only those",
            highlight=False,
            soft_wrap=True,
        )


def print_trained(result: Any) -> None:
    """The search table (if any), the dev decision, and where the adapter went."""
    facts = result.adapter.training
    if facts.search:
        out.print("search on the dev split (* = chosen):", highlight=False)
        out.print(facts.search, highlight=False, markup=False)
    style = "yellow" if result.shipped_identity else "green"
    out.print(f"[{style}]{escape(result.decision)}[/]", highlight=False)
    out.print(
        f"adapter ({result.adapter.type}, {result.adapter.num_parameters:,} parameters) saved to "
        f"{result.out}; trained in {result.seconds:.1f}s; {result.model_calls} model calls, "
        f"{result.texts_from_store} texts from the store"
    )


def print_index(record: dict[str, Any] | None) -> None:
    """What reading an --index cost: vectors read, passages embedded, the model check."""
    if not record:
        return
    line = (
        f"index {record['uri']}: {record['passage_vectors_from_index']} passage vectors read in "
        f"{record['read_seconds']:.2f}s, {record['passages_embedded']} passages embedded"
    )
    check = record.get("model_check")
    if check:
        verdict = "passed" if check["passed"] else "FAILED (--force)"
        line += (
            f"; model check {verdict}: cosine {check['lowest_cosine']:.4f} at worst on "
            f"{check['passages']} passages ({check['model_calls']} model call)"
        )
    out.print(line, highlight=False, soft_wrap=True)
