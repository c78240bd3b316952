"""The HTML report: one self-contained file that shows whether the adapter helps, and where.

The page is rendered by Jinja2 from the templates in ``templates/``, autoescaped, from the
typed view :func:`queryfit.report.view.build_view` makes of an evaluation. One template per
section, each a block of ``report.html``:

* **Headline** (``headline.html``): the verdict on the headline metric, the advice (deploy the
  adapter or keep the base model), a warning when the test queries were training queries, base
  vs adapted on every metric with paired-bootstrap 95% intervals (table and forest plot), and
  the headline metric on test queries about passages training saw vs the rest.
* **Plots** (``plots.html``): hit@k and recall@k for k = 1..100 (one chart when each query has
  one relevant passage, as they are then equal) and how far the relevant passage moved.
* **Training** (``training.html``): training and dev loss and the dev metric per epoch.
* **Queries** (``queries.html``): every query (or the ones that gained and lost most, on big
  sets) with the rank of its relevant passage before and after and the top passages, each an
  excerpt with its source when known; sortable and searchable.
* **Run facts** (``facts.html``): base model, adapter, data, training, model calls.

Headline and plots are plain HTML and inline SVG (:mod:`queryfit.report.plots`), so they render
without JavaScript; a few lines of script (``report.js``) only sort and filter the query table.
Nothing is fetched from the network; the evaluation's JSON is embedded in
``<script id="queryfit-evaluation" type="application/json">``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from queryfit import _io
from queryfit.errors import QueryfitError
from queryfit.report.view import build_view


class ReportError(QueryfitError):
    """The report cannot be written (no per-query details, or an unwritable path)."""


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    """The templates, autoescaped: every value is text unless it is :class:`Markup` (the SVG)."""
    env = Environment(
        loader=PackageLoader("queryfit.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda n: f"{n:,}"  # 12,345
    return env


def render_report(report: Any, *, title: str | None = None, path: str | Path | None = None) -> str:
    """The report for an :class:`~queryfit.api.EvaluationResult` as one HTML document.

    ``path`` is where it will be written; the embedded evaluation JSON records it.
    """
    view = build_view(report, title=title, path=path)
    return _environment().get_template("report.html").render(view=view)


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
