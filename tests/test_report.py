"""The HTML report: built from a small real run (bundled MiniLM, pydoc questions), checked for
agreement with the evaluation, rendered offline, and loaded in headless Chromium.

The browser tests drive Debian's ``chromium`` through its ``chromedriver`` (installed by
``.ci/run``); nothing is downloaded. They skip, saying why, only when those are missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from markupsafe import escape
from typer.testing import CliRunner

from queryfit import api
from queryfit.cli import app
from queryfit.data import QADataset, save_dataset, split_dataset
from queryfit.report import plots
from queryfit.report import view as view_module
from queryfit.report.details import opening
from queryfit.report.html import ReportError, render_report, write_report
from queryfit.store import EmbeddingStore
from queryfit.training import TrainConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The demo's queries have one relevant passage each, so hit@k is recall@k: one curve.
PLOTS = {"intervals", "hit-curve", "rank-changes", "loss", "dev-score"}


def small_dataset() -> QADataset:
    """The pydoc demo cut to its first 70 passages and their questions: quick to embed."""
    from queryfit.cli.demo import demo_dataset

    data = demo_dataset()
    passages = list(data.corpus)[:70]
    keep = set(passages)
    queries = [q for q in data.queries if set(data.relevant_docs[q]) <= keep]
    return data.subset(queries, passages)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train on part of the small set, evaluate on the rest, write the report: a real run."""
    path = tmp_path_factory.mktemp("report")
    data = small_dataset()
    train, test = split_dataset(data, dev_fraction=0.35, seed=1)
    save_dataset(train, path / "train.json")
    save_dataset(test, path / "test.json")
    store = EmbeddingStore(path / "store.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "little data" is expected here
        trained = api.train(
            path / "train.json",
            out=path / "adapter",
            store=store,
            progress=False,
            config=TrainConfig(max_epochs=12, patience=4, lr=1e-3),  # moves ranks both ways
        )
    # Where each passage came from, as `queryfit run` passes it (a dataset maps ids to text).
    sources = {d: f"reference/{d.rsplit('-', 1)[0]}.txt, page 1" for d in list(data.corpus)[::2]}
    evaluation = api.evaluate(
        path / "test.json",
        path / "adapter",
        store=store,
        progress=False,
        n_resamples=2000,
        report=path / "report.html",
        data_label="the pydoc demo's test split",
        sources=sources,
    )
    store.close()
    return SimpleNamespace(
        path=path,
        data=data,
        sources=sources,
        trained=trained,
        evaluation=evaluation,
        # What `queryfit evaluate --json` prints, read back as a user's script would.
        json=json.loads(json.dumps(evaluation.to_dict(), default=str)),
        html=Path(evaluation.report_path).read_text(encoding="utf-8"),
    )


# ---------------------------------------------------------------------------------------------
# The numbers behind the report


def test_curves_agree_with_the_metrics(run):
    ev = run.evaluation
    curves = ev.details.curves
    for system, summary in (("base", ev.base), ("adapted", ev.adapted)):
        hit, recall = curves["hit@k"][system], curves["recall@k"][system]
        assert len(hit) == len(recall) == 100
        assert np.all(np.diff(hit) >= 0) and np.all(np.diff(recall) >= 0) and hit[-1] <= 1
        for k in (1, 5, 10):
            assert hit[k - 1] == pytest.approx(summary[f"hit@{k}"])
        assert recall[9] == pytest.approx(summary["recall@10"])


def test_ranks_agree_with_the_per_query_metrics(run):
    ev = run.evaluation
    d = ev.details
    assert len(d.rank_base) == len(d.queries) == ev.queries
    for system, ranks in (("base", d.rank_base), ("adapted", d.rank_adapted)):
        assert (ranks >= 1).all()
        per_query = ev.per_query[system]
        np.testing.assert_array_equal(per_query["hit@10"], (ranks <= 10).astype(float))
        np.testing.assert_allclose(per_query["mrr@10"], np.where(ranks <= 10, 1.0 / ranks, 0.0))
    # The top passages are the ones ranked first, and a rank-1 query lists its passage first.
    for i in np.flatnonzero(d.rank_adapted == 1):
        assert d.top_adapted[i][0] in d.relevant[i]
    assert all(len(top) == 3 for top in d.top_base)
    assert set(d.passages) >= {p for top in d.top_base for p in top}


def test_adapter_json_carries_the_run_facts(run):
    meta = json.loads((run.path / "adapter" / "adapter.json").read_text())
    split = meta["training"]["split"]
    assert split["train_queries"] + split["dev_queries"] == meta["data"]["queries"]
    assert meta["training"]["embedding"]["model_calls"] > 0  # the first run embedded the texts
    facts = re.search(r'<dl class="facts".*?</dl>', run.html, re.S).group(0)
    for text in (
        "sentence-transformers:all-MiniLM-L6-v2",
        meta["data"]["fingerprint"],
        run.evaluation.details.data_fingerprint,
        f"{meta['data']['queries']:,} pairs",
        f"{split['train_queries']:,} to train",
        f"{meta['parameters']:,} parameters",
        f"{run.evaluation.model_calls:,} model call",
        f"{run.evaluation.texts_from_store:,} texts",
        "2,000 resamples",
    ):
        assert text in facts, text


def test_report_is_one_offline_file(run):
    html = run.html
    assert html.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no external scripts, styles, fonts or images.
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    names = set(re.findall(r'<svg class="plot" data-plot="([^"]+)"', html))
    assert names >= PLOTS
    assert run.evaluation.verdict in html
    embedded = re.search(
        r'<script type="application/json" id="queryfit-evaluation">(.*?)</script>', html, re.S
    ).group(1)
    assert json.loads(embedded) == run.json
    assert os.stat(run.evaluation.report_path).st_mode & 0o044  # others may read it


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_report_file_mode_follows_the_umask(run, tmp_path, mask):
    previous = os.umask(mask)
    try:
        path = write_report(run.evaluation, tmp_path / "r.html")
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


def _figures(html: str) -> list[str]:
    return re.findall(r"<figure\b.*?</figure>", html, re.S)


def test_no_empty_figures_a_missing_history_is_one_sentence(run):
    ev = run.evaluation
    assert 'data-plot="loss"' in run.html
    assert all("<svg" in f for f in _figures(run.html))
    bare = dataclasses.replace(ev, details=dataclasses.replace(ev.details, training=None))
    html = render_report(bare)
    assert 'data-plot="hit-curve"' in html and 'data-plot="loss"' not in html
    figures = _figures(html)
    assert figures and all("<svg" in f for f in figures)  # every box draws a chart
    note = re.search(r'<p class="note" id="training-note">(.*?)</p>', html).group(1)
    assert note == "The adapter records no per-epoch history, so there are no training curves."
    # Without per-query details: one sentence, no plot, training or query sections.
    plain = render_report(dataclasses.replace(ev, details=None))
    assert [re.search(r'id="([^"]+)"', f).group(1) for f in _figures(plain)] == ["fig-intervals"]
    assert 'id="queries"' not in plain and 'id="training"' not in plain
    assert "collected no per-query details" in plain


def test_one_relevant_passage_each_gives_one_hit_curve(run):
    ev = run.evaluation
    assert ev.details.one_relevant_each
    assert 'data-plot="recall-curve"' not in run.html
    caption = re.search(r'<figure id="fig-hit">.*?<figcaption>(.*?)</figcaption>', run.html, re.S)
    assert caption.group(1).startswith("hit@k (= recall@k: one relevant passage per query)")
    # A query with two relevant passages: recall@k differs from hit@k, so both are drawn.
    relevant = [list(r) for r in ev.details.relevant]
    relevant[0].append(next(d for d in ev.details.passages if d not in relevant[0]))
    two = dataclasses.replace(ev, details=dataclasses.replace(ev.details, relevant=relevant))
    html = render_report(two)
    assert 'data-plot="hit-curve"' in html and 'data-plot="recall-curve"' in html
    assert "one relevant passage per query" not in html


def test_identity_adapter_is_called_out_with_an(run):
    ev = run.evaluation
    identity = dataclasses.replace(ev, adapter={**ev.adapter, "type": "identity"})
    html = render_report(identity)
    assert 'id="identity-note"' in html and "with an identity query adapter" in html
    linear = render_report(dataclasses.replace(ev, adapter={**ev.adapter, "type": "linear"}))
    assert 'id="identity-note"' not in linear and "with a linear query adapter" in linear
    assert " a identity" not in html + run.html


def _advice(html: str) -> tuple[str, str]:
    found = re.search(r'<p class="advice (\w+)" id="advice"[^>]*><b>Advice:</b> (.*?)</p>', html)
    return found.group(1), found.group(2)


def test_advice_and_overlap_warning_lead_the_headline(run):
    ev = dataclasses.replace(run.evaluation, adapter={**run.evaluation.adapter, "type": "linear"})
    head = next(d for d in ev.differences if d.metric == ev.headline)
    others = [d for d in ev.differences if d is not head]
    gain = dataclasses.replace(head, adapted=head.base + 0.05, delta=0.05, low=0.02, high=0.08)
    deploy = dataclasses.replace(ev, differences=[gain, *others])
    assert deploy.deploy
    kind, text = _advice(render_report(deploy))
    assert kind == "deploy" and text == deploy.advice[0].upper() + deploy.advice[1:] + "."
    loss = dataclasses.replace(head, adapted=head.base - 0.05, delta=-0.05, low=-0.08, high=-0.02)
    kind, text = _advice(render_report(dataclasses.replace(ev, differences=[loss, *others])))
    assert kind == "keep" and text.startswith("Keep the base model: the adapter makes")
    # The fixture's own report: the advice above the lede, and no overlap (a held-out test).
    kind, text = _advice(run.html)
    assert text[1:].rstrip(".") == run.evaluation.advice[1:]
    assert run.html.index('id="advice"') < run.html.index('class="lede"')
    assert 'id="overlap-warning"' not in run.html

    overlap = dataclasses.replace(deploy, training_overlap=7)
    html = render_report(overlap)
    banner = re.search(
        r'<p class="banner warning" id="overlap-warning" role="alert">(.*?)</p>', html
    )
    assert banner and f"7 of the {ev.queries} test queries" in banner.group(1)
    assert "not held-out" in banner.group(1).lower()
    assert _advice(html)[0] == "none" and not overlap.deploy


def test_text_is_escaped_and_cannot_break_out(run):
    ev = run.evaluation
    d = ev.details
    evil = '<script>alert("q")</script> & co'
    pid = d.top_base[0][0]
    details = dataclasses.replace(
        d,
        queries=[evil, *d.queries[1:]],
        passages={**d.passages, pid: "<img src=x onerror=alert(1)> passage"},
        sources={**d.sources, pid: "<b>bold</b>.pdf"},
        data_label="</title><script>alert(2)</script>",
    )
    hostile = dataclasses.replace(
        ev, details=details, model_id="m</script><script>alert(3)</script>"
    )
    html = render_report(hostile)
    assert html.count("<script") == 2  # the embedded JSON and the table script, nothing else
    assert "<img" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt; &amp; co" in html
    assert "&lt;img src=x onerror=alert(1)&gt; passage" in html
    assert "&lt;/title&gt;&lt;script&gt;alert(2)" in html
    embedded = re.search(
        r'<script type="application/json" id="queryfit-evaluation">(.*?)</script>', html, re.S
    ).group(1)
    assert json.loads(embedded)["model_id"] == hostile.model_id


def test_passages_show_an_excerpt_their_source_and_a_small_id(run):
    d = run.evaluation.details
    table = re.search(r'<table class="queries".*?</table>', run.html, re.S).group(0)
    items = re.findall(
        r'<span class="excerpt">(.*?)</span><span class="where">(.*?)</span></span>', table
    )
    assert len(items) >= 3 * len(d.queries)  # the relevant passage and each top-3 list
    with_source = 0
    for excerpt, where in items:
        pid = re.search(r'<span class="pid" title="([^"]+)">', where).group(1)
        assert excerpt == str(escape(opening(run.data.corpus[pid])))
        source = re.search(r'<span class="src">(.*?)</span>', where)
        if pid in run.sources:
            assert source.group(1) == str(escape(run.sources[pid]))
            with_source += 1
        else:
            assert source is None  # unknown: the excerpt and id only
    assert 0 < with_source < len(items)
    assert set(d.sources) <= set(run.sources) and set(d.sources) <= set(d.passages)


def test_the_data_is_named_by_what_it_is(run):
    facts = re.search(r'<dl class="facts".*?</dl>', run.html, re.S).group(0)
    evaluated = re.search(r"<dt>evaluated on</dt><dd>(.*?)</dd>", facts).group(1)
    assert evaluated.startswith(
        f"the pydoc demo&#39;s test split, saved as {run.path / 'test.json'}: "
        f"{run.evaluation.queries} queries"
    )
    assert "on the pydoc demo&#39;s test split" in run.html.split("</header>")[0]
    assert "in-memory" not in run.html
    bare = dataclasses.replace(
        run.evaluation,
        details=dataclasses.replace(run.evaluation.details, data_source=None, data_label=None),
    )
    assert "a dataset passed in Python (not read from a file)" in render_report(bare)


def test_big_query_sets_keep_the_biggest_movers(run, monkeypatch):
    monkeypatch.setattr(view_module, "MAX_TABLE_ROWS", 10)
    html = render_report(run.evaluation)
    table = re.search(r'<table class="queries".*?</table>', html, re.S).group(0)
    assert table.count("<tr class=") == 10
    assert "that gained most" in html


def test_bad_report_paths_fail_before_any_work(run, tmp_path):
    with pytest.raises(ReportError, match="folder"):
        write_report(run.evaluation, tmp_path)
    with pytest.raises(ReportError, match=r"\.html"):
        api.evaluate(run.path / "test.json", run.path / "missing-adapter", report="out.txt")
    assert not (tmp_path / "x.html").exists()


def test_opening_is_the_start_without_decoration_cut_at_a_word():
    assert opening("  first   line \nsecond") == "first line second"
    assert opening('The "assert" statement\n**********\n\nAssert statements') == (
        'The "assert" statement Assert statements'
    )
    assert opening("## Install\n\n---\nRun `pip install x` -- or a b-c") == (
        "Install Run `pip install x` -- or a b-c"
    )
    long = "word " * 100
    cut = opening(long, 40)
    assert cut.endswith("…") and len(cut) <= 41 and "wor…" not in cut


# ---------------------------------------------------------------------------------------------
# Command line


def test_cli_report_and_evaluate_flag(run, tmp_path):
    runner = CliRunner()
    store = str(run.path / "store.sqlite")
    common = ["--data", str(run.path / "test.json"), "--adapter", str(run.path / "adapter")]
    common += ["--resamples", "2000"]  # as the fixture's run, so the intervals are the same
    result = runner.invoke(
        app, ["report", *common, "--out", str(tmp_path / "r.html"), "--store", store, "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["report_path"] == str(tmp_path / "r.html")
    assert printed["model_calls"] == 0  # the store served every text
    assert printed["verdict"] == run.evaluation.verdict
    written = (tmp_path / "r.html").read_text()
    assert 'data-plot="hit-curve"' in written
    # No sources given: each passage still shows its excerpt, with no source label.
    assert '<span class="excerpt">' in written and '<span class="src">' not in written

    result = runner.invoke(
        app, ["evaluate", *common, "--store", store, "-q", "--report", str(tmp_path / "e.html")]
    )
    assert result.exit_code == 0, result.output
    assert f"report written to {tmp_path / 'e.html'}" in result.stdout
    assert f"advice: {run.evaluation.advice}" in result.stdout
    assert (tmp_path / "e.html").is_file()

    result = runner.invoke(app, ["evaluate", *common, "--store", store, "--report", "x.txt"])
    assert result.exit_code == 2
    assert "should end in .html" in result.output


def test_demo_ends_by_writing_the_report(run, tmp_path, monkeypatch):
    import queryfit.cli.demo

    monkeypatch.setattr(queryfit.cli.demo, "demo_dataset", lambda seed=0: run.data)
    result = CliRunner().invoke(
        app,
        ["demo", "--out", str(tmp_path / "demo"), "--store", str(run.path / "store.sqlite")],
    )
    assert result.exit_code == 0, result.output
    assert "advice: " in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and "report.html" in last
    html = (tmp_path / "demo" / "report.html").read_text()
    assert 'data-plot="rank-changes"' in html and "test.json" in html


# ---------------------------------------------------------------------------------------------
# The SVG helpers


def test_nice_ticks_cover_the_range():
    assert plots.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = plots.nice_ticks(2.83, 3.81)
    assert ticks[0] <= 2.83 and ticks[-1] >= 3.81 and len(ticks) <= 8
    assert plots.nice_ticks(5, 5)[0] < 5 < plots.nice_ticks(5, 5)[-1]


def test_line_chart_leaves_gaps_and_bar_chart_draws_every_bar():
    svg = plots.line_chart(
        "t",
        [plots.Series("a", [0, 1, 2, 3, 4], [1.0, 2.0, None, 3.0, 4.0], "#000")],
        title="T",
        x_label="x",
        y_label="y",
    )
    assert svg.count("<path ") == 2 and svg.count('class="point"') == 4
    bars = plots.bar_chart(
        "b",
        ["down 1", "same", "up 1"],
        [3, 0, 5],
        ["#a", "#b", "#c"],
        title="B",
        x_label="x",
        y_label="n",
    )
    assert bars.count('class="bar"') == 3 and 'data-value="5"' in bars


# ---------------------------------------------------------------------------------------------
# In a real browser


def _chromium_missing() -> str | None:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return (
            f"{CHROMIUM} and {CHROMEDRIVER} are needed (Debian packages chromium and "
            "chromium-driver; .ci/run installs them)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def _driver(profile: Path, javascript: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser(tmp_path):
    reason = _chromium_missing()
    if reason:
        pytest.skip(reason)
    driver = _driver(tmp_path / "profile")
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _column(driver, cls: str) -> list[int]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#query-table tbody tr'))"
        ".filter(r => !r.hidden)"
        f".map(r => parseInt(r.querySelector('td.{cls}').getAttribute('data-sort'), 10));"
    )


def test_report_in_chromium(run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(Path(run.evaluation.report_path).resolve().as_uri())
    ev = run.json

    # Headline: the verdict sentence and every metric's numbers, as the evaluation JSON says.
    assert browser.find_element(By.ID, "verdict").text == ev["verdict"]
    for diff in ev["differences"]:
        row = browser.find_element(
            By.CSS_SELECTOR, f'#metrics-table tr[data-metric="{diff["metric"]}"]'
        )
        cells = {
            c: row.find_element(By.CLASS_NAME, c).text for c in ("base", "adapted", "delta", "ci")
        }
        assert cells["base"] == f"{ev['base'][diff['metric']]:.4f}"
        assert cells["adapted"] == f"{ev['adapted'][diff['metric']]:.4f}"
        assert float(cells["delta"]) == pytest.approx(100 * diff["delta"], abs=0.051)
        low, high = (float(x) for x in cells["ci"].strip("[]").split(","))
        assert low == pytest.approx(100 * diff["low"], abs=0.051)
        assert high == pytest.approx(100 * diff["high"], abs=0.051)
    tile = browser.find_element(By.CSS_SELECTOR, f'.tile[data-metric="{ev["headline"]}"]')
    assert (
        tile.find_element(By.CLASS_NAME, "adapted").text == f"{ev['adapted'][ev['headline']]:.4f}"
    )
    embedded = browser.execute_script(
        "return JSON.parse(document.getElementById('queryfit-evaluation').textContent)"
    )
    assert embedded["verdict"] == ev["verdict"] and embedded["base"] == ev["base"]

    # Every plot is there, laid out with a real size, and draws something.
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.plot')).map(s => {"
        "  const r = s.getBoundingClientRect();"
        "  const marks = Array.from(s.querySelectorAll('path, rect, circle')).filter(e => {"
        "    const b = e.getBBox(); return b.width > 0 || b.height > 0; });"
        "  return [s.dataset.plot, r.width, r.height, marks.length]; })"
    )
    drawn = {name: (w, h, marks) for name, w, h, marks in sizes}
    assert set(drawn) >= PLOTS
    for name, (w, h, marks) in drawn.items():
        assert w > 200 and h > 100 and marks > 0, (name, w, h, marks)
    bars = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg[data-plot=rank-changes] rect.bar'))"
        ".map(r => parseFloat(r.dataset.value))"
    )
    moved = [
        int(browser.find_element(By.ID, i).text.replace(",", ""))
        for i in ("moved-up", "moved-down", "moved-same")
    ]
    assert sum(bars) == sum(moved) == ev["queries"]

    # The query table: every query, sortable by clicking, searchable, filterable.
    rows = browser.find_elements(By.CSS_SELECTOR, "#query-table tbody tr")
    assert len(rows) == ev["queries"]
    header = browser.find_element(By.CSS_SELECTOR, "#query-table th:nth-child(2)")  # "before"
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    before = _column(browser, "before")
    assert before == sorted(before, reverse=True) and len(set(before)) > 1
    header.click()
    assert _column(browser, "before") == sorted(before)
    browser.find_element(By.CSS_SELECTOR, "#query-table th:nth-child(4)").click()  # "moved"
    moved_col = _column(browser, "moved")
    assert moved_col == sorted(moved_col, reverse=True)
    query_header = browser.find_element(By.CSS_SELECTOR, "#query-table th:nth-child(1)")
    query_header.click()
    texts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#query-table tbody tr'))"
        ".map(r => r.cells[0].getAttribute('data-sort').trim().toLowerCase())"
    )
    assert texts == sorted(texts)

    word = run.evaluation.details.queries[0].split()[0]
    browser.find_element(By.ID, "query-search").send_keys(word)
    visible = [
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#query-table tbody tr")
        if r.is_displayed()
    ]
    assert 0 < len(visible) <= ev["queries"]
    assert all(word.lower() in r.text.lower() for r in visible)
    assert browser.find_element(By.ID, "query-count").text.startswith(f"{len(visible)} of ")
    browser.find_element(By.ID, "query-search").clear()
    browser.execute_script(
        "document.getElementById('query-search').dispatchEvent(new Event('input'))"
    )
    browser.find_element(By.CSS_SELECTOR, 'button[data-filter="loss"]').click()
    changes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#query-table tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.dataset.change)"
    )
    assert set(changes) <= {"loss"} and len(changes) == moved[1]

    # A full-page screenshot, for a person to look at.
    browser.find_element(By.CSS_SELECTOR, 'button[data-filter="all"]').click()
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def test_headline_and_plots_render_without_javascript(run, tmp_path):
    reason = _chromium_missing()
    if reason:
        pytest.skip(reason)
    from selenium.webdriver.common.by import By

    driver = _driver(tmp_path / "profile", javascript=False)
    try:
        driver.get(Path(run.evaluation.report_path).resolve().as_uri())
        assert driver.find_element(By.ID, "verdict").text == run.evaluation.verdict
        # Script is off: the search box stays hidden, yet every plot and every row is shown.
        assert not driver.find_element(By.ID, "query-controls").is_displayed()
        svgs = driver.find_elements(By.CSS_SELECTOR, "svg.plot")
        assert {s.get_attribute("data-plot") for s in svgs} >= PLOTS
        assert all(s.size["width"] > 200 and s.size["height"] > 100 for s in svgs)
        rows = driver.find_elements(By.CSS_SELECTOR, "#query-table tbody tr")
        assert len(rows) == run.evaluation.queries
    finally:
        driver.quit()
