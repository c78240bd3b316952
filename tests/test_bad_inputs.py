"""Bad inputs at the command line: each is one line on stderr naming the problem and the fix.

One table, one row per bad input. Each row builds its files in a fresh folder, runs the real CLI
(the Typer app in-process, which captures stderr apart from stdout; a few rows are also run as
``python -m queryfit`` to show the two agree) and checks: exit code 2, exactly one non-empty line
on stderr holding every expected piece, no traceback, and no output file left behind (neither the
paths the row names nor any temporary file).

To add a case, append a ``Case`` to ``CASES``: ``args`` are the CLI words, run in the row's folder;
``setup`` writes the inputs there; ``expect`` are pieces of the one stderr line (the problem and
the fix); ``absent`` are output paths that must not exist afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from queryfit.adapters import Adapter, save_adapter
from queryfit.cli import app
from queryfit.data import QADataset, save_dataset
from queryfit.embedders import CallableEmbedder
from queryfit.store import EmbeddingStore

SRC = Path(__file__).resolve().parent.parent / "src"
DIM = 8
OK = QADataset(
    queries={f"q{i}": f"question number {i}?" for i in range(6)},
    corpus={f"d{i}": f"passage number {i}." for i in range(6)},
    relevant_docs={f"q{i}": [f"d{i}"] for i in range(6)},
)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    setup: Callable[[Path], object] = lambda folder: None
    absent: tuple[str, ...] = ()


# -- inputs ---------------------------------------------------------------------------------------


def ok_json(folder: Path) -> None:
    save_dataset(OK, folder / "ok.json")


def text_file(name: str, text: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        ok_json(folder)
        (folder / name).write_text(text, encoding="utf-8")

    return setup


def bytes_file(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        ok_json(folder)
        (folder / name).write_bytes(data)

    return setup


def beir(splits: tuple[str, ...] = ("test",), score: str = "1") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        ok_json(folder)
        root = folder / "beir"
        (root / "qrels").mkdir(parents=True)
        (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "A passage."}\n')
        (root / "queries.jsonl").write_text('{"_id": "q1", "text": "A question?"}\n')
        for split in splits:
            (root / "qrels" / f"{split}.tsv").write_text(
                f"query-id\tcorpus-id\tscore\nq1\td1\t{score}\n"
            )

    return setup


def beir_with_corpus(text: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        beir()(folder)
        (folder / "beir" / "corpus.jsonl").write_text(text)

    return setup


def adapter(change: Callable[[Path], None] | None = None, kind: str = "linear"):
    """A valid adapter folder ``adapter/`` (next to ok.json), then ``change`` applied to it."""

    def setup(folder: Path) -> None:
        ok_json(folder)
        rng = np.random.default_rng(0)
        params = {
            "linear": {"weight": rng.normal(size=(DIM, DIM)), "bias": np.zeros(DIM)},
            "low_rank": {"down": rng.normal(size=(2, DIM)), "up": rng.normal(size=(DIM, 2))},
            "residual_mlp": {
                "in_weight": rng.normal(size=(3, DIM)),
                "in_bias": np.zeros(3),
                "out_weight": rng.normal(size=(DIM, 3)),
                "out_bias": np.zeros(DIM),
            },
        }[kind]
        model = {"id": "sentence-transformers:all-MiniLM-L6-v2"}
        save_adapter(Adapter(type=kind, params=params, dim=DIM, base_model=model), folder / "a")
        if change is not None:
            change(folder / "a")

    return setup


def set_array(name: str, value: np.ndarray) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        from safetensors.numpy import load_file, save_file

        arrays = load_file(str(folder / "adapter.safetensors"))
        arrays[name] = value.astype(np.float32)
        save_file(arrays, str(folder / "adapter.safetensors"))

    return change


def set_field(name: str, value: object) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        meta = json.loads((folder / "adapter.json").read_text())
        meta[name] = value
        (folder / "adapter.json").write_text(json.dumps(meta))

    return change


def filled_store(folder: Path) -> Path:
    path = folder / "store.sqlite"

    def model(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), DIM), np.float32)

    with EmbeddingStore(path) as store:
        store.embed(
            CallableEmbedder(model, "test:fake", dim=DIM),
            [f"text {i}" for i in range(1500)],
            "document",
            progress=False,
        )
    return path


def damaged_store(folder: Path) -> None:
    """Data pages damaged in the middle of the file; the header is intact."""
    ok_json(folder)
    path = filled_store(folder)
    raw = bytearray(path.read_bytes())
    middle = (len(raw) // 4096 // 2) * 4096
    raw[middle : middle + 16] = b"\xff" * 16
    path.write_bytes(bytes(raw))


def headerless_store(folder: Path) -> None:
    ok_json(folder)
    path = filled_store(folder)
    raw = bytearray(path.read_bytes())
    raw[:16] = b"garbage garbage!"
    path.write_bytes(bytes(raw))


def foreign_db(folder: Path) -> None:
    ok_json(folder)
    conn = sqlite3.connect(folder / "store.sqlite")
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()


def store_folder(folder: Path) -> None:
    ok_json(folder)
    (folder / "store.sqlite").mkdir()


DEEP = "[" * 100_000 + "]" * 100_000
LONE = (
    '{"queries": {"q1": "what is \\ud800?"}, "corpus": {"d1": "text"}, '
    '"relevant_docs": {"q1": ["d1"]}}'
)
EVAL = ("evaluate", "--data", "ok.json", "--adapter", "a", "--report", "r.html")
TRAIN = ("train", "--data", "ok.json", "--out", "out")
GENERATE = ("generate", "--docs", "docs", "--out", "p.json", "--llm", "heuristic")
OUT = ("p.json",)


def one_query_and_adapter(folder: Path) -> None:
    adapter()(folder)
    save_dataset(OK.subset(["q0"]), folder / "one.json")


CASES: list[Case] = [
    # -- datasets --------------------------------------------------------------------------------
    Case(
        "lone-surrogate-llamaindex",
        ("embed", "--data", "s.json"),
        ("query 'q1' text holds a lone surrogate '\\ud800'", "remove it", "s.json"),
        text_file("s.json", LONE),
    ),
    Case(
        "lone-surrogate-jsonl",
        ("embed", "--data", "s.jsonl"),
        ("line 2: passage text holds a lone surrogate", "s.jsonl"),
        text_file(
            "s.jsonl", '{"query": "a?", "passage": "b"}\n{"query": "c?", "passage": "\\udfff"}\n'
        ),
    ),
    Case(
        "lone-surrogate-beir",
        ("embed", "--data", "beir"),
        ("passage 'd1' text holds a lone surrogate",),
        beir_with_corpus('{"_id": "d1", "text": "bad \\ud800 text"}\n'),
    ),
    Case(
        "lone-surrogate-in-an-id",
        ("embed", "--data", "s.json"),
        ("query id 'q\\udc00' holds a lone surrogate",),
        text_file(
            "s.json",
            '{"queries": {"q\\udc00": "x?"}, "corpus": {"d": "y"}, '
            '"relevant_docs": {"q\\udc00": ["d"]}}',
        ),
    ),
    Case(
        "deep-json",
        ("embed", "--data", "deep.json"),
        ("invalid JSON in deep.json", "nested too deeply", "Fix: repair the JSON"),
        text_file("deep.json", DEEP),
    ),
    Case(
        "deep-jsonl",
        ("embed", "--data", "deep.jsonl"),
        ("line 1: invalid JSON (nested too deeply",),
        text_file("deep.jsonl", DEEP + "\n"),
    ),
    Case(
        "deep-beir-queries",
        ("embed", "--data", "beir"),
        ("queries.jsonl line 1: invalid JSON (nested too deeply)",),
        lambda folder: (beir()(folder), (folder / "beir" / "queries.jsonl").write_text(DEEP)),
    ),
    Case(
        "qrels-nan-score",
        ("embed", "--data", "beir"),
        ("qrels/test.tsv line 2: score 'nan' is not a finite number", "write 1 for relevant"),
        beir(score="nan"),
    ),
    Case(
        "qrels-inf-score",
        ("embed", "--data", "beir"),
        ("score 'inf' is not a finite number",),
        beir(score="inf"),
    ),
    Case(
        "qrels-minus-infinity-score",
        ("train", "--data", "beir", "--out", "out"),
        ("score '-Infinity' is not a finite number",),
        beir(score="-Infinity"),
        absent=("out",),
    ),
    Case(
        "beir-several-splits-needs-split",
        ("embed", "--data", "beir"),
        ("cannot choose a qrels split (found: dev, train)", "pass --split NAME"),
        beir(splits=("dev", "train")),
    ),
    Case(
        "beir-unknown-split",
        ("train", "--data", "beir", "--split", "nope", "--out", "out"),
        ("no qrels/nope.tsv (found: dev, train)", "--split with one of the found splits"),
        beir(splits=("dev", "train")),
        absent=("out",),
    ),
    Case(
        "split-on-a-json-file",
        ("report", "--data", "ok.json", "--split", "dev", "--adapter", "a", "--out", "r.html"),
        ("--split dev given for ok.json, which is not a BEIR folder", "Fix: drop --split."),
        adapter(),
        absent=("r.html",),
    ),
    Case(
        "split-on-a-jsonl-file-evaluate",
        (
            "evaluate",
            "--data",
            "p.jsonl",
            "--split",
            "test",
            "--adapter",
            "a",
            "--report",
            "r.html",
        ),
        ("--split test given for p.jsonl", "drop --split"),
        lambda folder: (adapter()(folder), save_dataset(OK, folder / "p.jsonl")),
        absent=("r.html",),
    ),
    Case(
        "corrupt-gzip",
        ("embed", "--data", "p.jsonl.gz"),
        ("cannot read p.jsonl.gz", "UTF-8 text file (optionally gzipped)"),
        bytes_file("p.jsonl.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate data"),
    ),
    Case(
        "unknown-extension",
        ("embed", "--data", "pairs.txt"),
        ("cannot tell the format of pairs.txt", "rename the file"),
        text_file("pairs.txt", "q\tp\n"),
    ),
    # -- adapters -------------------------------------------------------------------------------
    Case(
        "adapter-nan-weights",
        EVAL,
        ("adapter.safetensors: array 'weight' holds 64 NaN or infinite value(s)", "retrain"),
        adapter(set_array("weight", np.full((DIM, DIM), np.nan))),
        absent=("r.html",),
    ),
    Case(
        "adapter-inf-bias",
        EVAL,
        ("array 'bias' holds 1 NaN or infinite value(s)",),
        adapter(set_array("bias", np.array([np.inf] + [0.0] * (DIM - 1)))),
        absent=("r.html",),
    ),
    Case(
        "adapter-weight-shape-not-dim",
        EVAL,
        ("array 'weight' has shape (8, 5), expected (8, 8)", "says type linear, dim 8"),
        adapter(set_array("weight", np.ones((DIM, 5)))),
        absent=("r.html",),
    ),
    Case(
        "adapter-low-rank-up-shape",
        EVAL,
        ("array 'up' has shape (8, 3), expected (8, 2)",),
        adapter(set_array("up", np.ones((DIM, 3))), kind="low_rank"),
        absent=("r.html",),
    ),
    Case(
        "adapter-mlp-in-bias-shape",
        EVAL,
        ("array 'in_bias' has shape (4,), expected (3,)",),
        adapter(set_array("in_bias", np.ones(4)), kind="residual_mlp"),
        absent=("r.html",),
    ),
    Case(
        "adapter-base-model-not-object",
        EVAL,
        ("base_model is 'sentence-transformers:all-MiniLM-L6-v2', expected an object", "retrain"),
        adapter(set_field("base_model", "sentence-transformers:all-MiniLM-L6-v2")),
        absent=("r.html",),
    ),
    Case(
        "adapter-dim-not-a-number",
        EVAL,
        ("adapter.json: dim is 'eight', expected a positive integer",),
        adapter(set_field("dim", "eight")),
        absent=("r.html",),
    ),
    Case(
        "adapter-normalize-not-bool",
        EVAL,
        ("normalize is 'no', expected true or false",),
        adapter(set_field("normalize", "no")),
        absent=("r.html",),
    ),
    Case(
        "adapter-weights-not-safetensors",
        EVAL,
        ("adapter.safetensors is not a readable safetensors file", "retrain"),
        adapter(lambda folder: (folder / "adapter.safetensors").write_bytes(b"\x80\x04junk")),
        absent=("r.html",),
    ),
    Case(
        "export-of-a-nan-adapter",
        ("export", "--adapter", "a", "--out", "exported"),
        ("array 'weight' holds",),
        adapter(set_array("weight", np.full((DIM, DIM), np.inf))),
        absent=("exported",),
    ),
    # -- the embedding store --------------------------------------------------------------------
    Case(
        "store-damaged-data-pages",
        ("embed", "--data", "ok.json", "--store", "store.sqlite"),
        ("embedding store store.sqlite is damaged", "queryfit store repair --store store.sqlite"),
        damaged_store,
    ),
    Case(
        "store-damaged-header",
        ("embed", "--data", "ok.json", "--store", "store.sqlite"),
        ("not a usable SQLite database", "queryfit store repair --store store.sqlite"),
        headerless_store,
    ),
    Case(
        "store-foreign-database",
        ("embed", "--data", "ok.json", "--store", "store.sqlite"),
        ("not a queryfit store (tables: songs)", "--store PATH"),
        foreign_db,
    ),
    Case(
        "store-is-a-folder",
        ("embed", "--data", "ok.json", "--store", "store.sqlite"),
        ("it is a folder, not a file", "--store PATH"),
        store_folder,
    ),
    Case(
        "store-check-missing-file",
        ("store", "check", "--store", "missing.sqlite"),
        ("no embedding store at missing.sqlite", "--store PATH"),
    ),
    Case(
        "store-repair-foreign-database",
        ("store", "repair", "--store", "store.sqlite"),
        ("is a SQLite database but not a queryfit embedding store (tables: songs)",),
        foreign_db,
    ),
    Case(
        "store-repair-a-folder",
        ("store", "repair", "--json", "--store", "store.sqlite"),
        ("store.sqlite is a folder, not an embedding store",),
        store_folder,
    ),
    # -- settings: every number checked before any work -------------------------------------------
    *[
        Case(f"train-{flag.strip('-')}-{value}", (*TRAIN, flag, value), expect, ok_json, ("out",))
        for flag, value, expect in [
            ("--lr", "nan", ("lr (--lr) must be a number above 0 up to 10, not nan",)),
            ("--lr", "1e30", ("lr (--lr) must be a number above 0 up to 10, not 1e+30",)),
            ("--epochs", "1000000000", ("epochs (--epochs) must be a whole number from 0",)),
            ("--max-epochs", "0", ("max_epochs (--max-epochs) must be a whole number from 1",)),
            ("--cv-folds", "1", ("(--cv-folds) must be 0 (one dev split) or at least 2 folds",)),
            ("--batch-size", "0", ("batch_size (--batch-size) must be a whole number",)),
            ("--label-smoothing", "1", ("(--label-smoothing) must be a number from 0 up to",)),
            ("--scale", "inf", ("scale (--scale) must be a number above 0",)),
            ("--identity-penalty", "-1", ("(--identity-penalty) must be a number from 0",)),
            ("--adapter-type", "cubic", ("adapter_type (--adapter-type) must be one of",)),
            ("--split-by", "topic", ("split_by (--split-by) must be coverage, query or passage",)),
            ("--dev-fraction", "1.5", ("dev_fraction (--dev-fraction) must be in [0, 1)",)),
        ]
    ],
    Case(
        "train-out-is-a-file",
        (*TRAIN,),
        ("--out out is a file", "pass a folder path"),
        text_file("out", "not a folder"),
    ),
    Case(
        "evaluate-resamples-zero",
        ("evaluate", "--data", "ok.json", "--adapter", "a", "--resamples", "0"),
        ("n_resamples (--resamples) must be a whole number from 1",),
        adapter(),
    ),
    Case(
        "evaluate-resamples-negative",
        ("evaluate", "--data", "ok.json", "--adapter", "a", "--resamples", "-5"),
        ("n_resamples (--resamples) must be a whole number from 1", "-5"),
        adapter(),
    ),
    Case(
        "evaluate-one-query",
        ("evaluate", "--data", "one.json", "--adapter", "a"),
        ("1 test query: an evaluation needs at least 2", "add held-out questions"),
        one_query_and_adapter,
    ),
    Case(
        "report-one-query",
        ("report", "--data", "one.json", "--adapter", "a", "--out", "r.html"),
        ("1 test query: an evaluation needs at least 2",),
        one_query_and_adapter,
        ("r.html",),
    ),
    *[
        Case(
            f"generate-{flag.strip('-')}",
            (*GENERATE, flag, value, *more),
            expect,
            absent=("p.json",),
        )
        for flag, value, more, expect in [
            ("--temperature", "5", (), ("--temperature must be between 0 and 2, not 5.0",)),
            ("--questions-per-passage", "0", (), ("--questions-per-passage must be at least 1",)),
            ("--concurrency", "0", (), ("--concurrency must be at least 1",)),
            (
                "--chunk-tokens",
                "64",
                ("--overlap-tokens", "64"),
                ("--overlap-tokens (64) must be below --chunk-tokens (64)",),
            ),
        ]
    ],
    Case(
        "run-test-fraction",
        ("run", "--docs", "docs", "--out", "o", "--llm", "heuristic", "--test-fraction", "2"),
        ("--test-fraction must be between 0 and 1, not 2.0",),
        absent=("o",),
    ),
    Case(
        "embed-unknown-backend",
        ("embed", "--data", "ok.json", "--backend", "spark"),
        ("--backend must be local or ray, not 'spark'",),
        ok_json,
    ),
    Case(
        "embed-ray-address-without-ray",
        ("embed", "--data", "ok.json", "--ray-address", "auto"),
        ("--ray-address and --ray-workers need --backend ray",),
        ok_json,
    ),
]


def _run_in_process(args: tuple[str, ...], folder: Path, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("QUERYFIT_STORE", str(folder / "default-store.sqlite"))
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _check(case: Case, folder: Path, before: set[Path], code: int, stdout: str, stderr: str):
    assert code == 2, f"exit {code}; stdout: {stdout!r}; stderr: {stderr!r}"
    assert "Traceback" not in stdout + stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("error: ")
    for piece in case.expect:
        assert piece in lines[0], f"{piece!r} missing from {lines[0]!r}"
    for name in case.absent:
        assert not (folder / name).exists(), f"{name} was left behind"
    left = {p for p in folder.rglob("*") if p not in before and ".damaged-" not in p.name}
    left = {p for p in left if not p.name.startswith("default-store.sqlite")}
    assert not [p for p in left if p.suffix == ".tmp" or p.name.startswith(".")], left


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: Case, tmp_path: Path, monkeypatch) -> None:
    case.setup(tmp_path)
    before = set(tmp_path.rglob("*"))
    code, stdout, stderr = _run_in_process(case.args, tmp_path, monkeypatch)
    _check(case, tmp_path, before, code, stdout, stderr)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id", ["lone-surrogate-llamaindex", "store-damaged-data-pages"])
def test_the_real_entry_point_prints_the_same_line(case_id: str, tmp_path: Path) -> None:
    """``python -m queryfit`` in a subprocess (a pipe, not a terminal) agrees with the runner."""
    case = next(c for c in CASES if c.id == case_id)
    case.setup(tmp_path)
    before = set(tmp_path.rglob("*"))
    env = os.environ | {
        "PYTHONPATH": str(SRC),
        "HF_HUB_OFFLINE": "1",
        "QUERYFIT_STORE": str(tmp_path / "default-store.sqlite"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "queryfit", *case.args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check(case, tmp_path, before, result.returncode, result.stdout, result.stderr)
