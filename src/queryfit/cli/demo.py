"""The whole loop offline, on text every Python install carries: the language reference topics
in the standard library's ``pydoc_data``.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from queryfit.cli.app import app, emit_json, out, user_errors
from queryfit.cli.options import JsonOpt, QuietOpt, StoreOpt
from queryfit.cli.render import comparison_table
from queryfit.data import QADataset


def pydoc_passages(max_words: int = 180) -> dict[str, str]:
    """Python reference topics cut into paragraph-packed passages of at most ``max_words``."""
    from pydoc_data.topics import topics

    passages: dict[str, str] = {}
    for topic, text in sorted(topics.items()):
        paragraphs = [
            " ".join(p.split())
            for p in re.split(r"\n\s*\n", text)
            if len(p.split()) >= 8 and not p.startswith("   ")  # skip grammar and code blocks
        ]
        chunk: list[str] = []
        for paragraph in paragraphs:
            if chunk and len(" ".join(chunk).split()) + len(paragraph.split()) > max_words:
                passages[f"{topic}-{len(passages)}"] = " ".join(chunk)
                chunk = []
            chunk.append(paragraph)
        if chunk:
            passages[f"{topic}-{len(passages)}"] = " ".join(chunk)
    return passages


def demo_dataset(seed: int = 0, questions_per_passage: int = 4) -> QADataset:
    """Keyword pseudo-questions (the offline heuristic generator) over the pydoc passages.

    Keyword queries are how many people search, and the gap between them and prose passages is
    the kind of systematic shift a query adapter can learn; inverse-cloze sentences (one sentence
    lifted out of its passage) gave the adapter nothing to learn here, so the gate shipped the
    identity.
    """
    from queryfit.generation.generators import HeuristicGenerator
    from queryfit.generation.pipeline import question_id

    generator = HeuristicGenerator()
    passages = pydoc_passages()
    queries: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    for passage_id, text in passages.items():
        for question in generator.generate(text, questions_per_passage, seed=seed):
            qid = question_id(passage_id, question)
            queries[qid] = question
            relevant[qid] = [passage_id]
    return QADataset(queries=queries, corpus=passages, relevant_docs=relevant)


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(Path("queryfit-demo"), "--out", help="Folder for the results."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Run the whole loop offline on Python's own reference docs and print the comparison.

    Builds keyword pseudo-questions from the `pydoc_data` topics, holds out a test third of them,
    trains an adapter for the bundled all-MiniLM-L6-v2 on the rest, evaluates it, and writes the
    HTML report (`<out>/report.html`).

    Example: `queryfit demo`
    """
    from queryfit import api
    from queryfit.cli.demo import demo_dataset
    from queryfit.data import save_dataset, split_dataset

    dataset = demo_dataset()
    train_part, test_part = split_dataset(dataset, dev_fraction=0.3, by="query", seed=1)
    workdir.mkdir(parents=True, exist_ok=True)
    save_dataset(train_part, workdir / "train.json")
    save_dataset(test_part, workdir / "test.json")
    progress = not (quiet or as_json)
    if progress:
        out.print(
            f"demo: {len(dataset.queries)} questions over {len(dataset.corpus)} passages "
            f"(Python reference topics); training on {len(train_part.queries)}, "
            f"testing on {len(test_part.queries)}"
        )
    trained = api.train(train_part, out=workdir / "adapter", store=store, progress=progress)
    report = api.evaluate(
        workdir / "test.json",
        workdir / "adapter",
        store=store,
        progress=progress,
        report=workdir / "report.html",
    )
    if as_json:
        return emit_json({"train": trained.to_dict(), "evaluate": report.to_dict()})
    out.print(trained.decision, highlight=False)
    out.print(comparison_table(report, "held-out test questions: base vs adapted"))
    out.print(f"verdict: {report.verdict}", highlight=False)
    out.print(f"advice: {report.advice}", highlight=False, soft_wrap=True)
    out.print(f"adapter and data written to {workdir}/")
    out.print(
        f"report: {Path(report.report_path).resolve()} (open it in a browser)",
        highlight=False,
        soft_wrap=True,
    )
