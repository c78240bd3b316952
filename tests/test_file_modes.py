"""Every file queryfit writes gets the mode a plain ``open()`` gives under the user's umask.

An adapter written by one user must stay readable by the service that loads it (0644 under the
usual 022 umask), and stay private under 077. Each writer is run under both masks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from queryfit import _io
from queryfit._io import write_json
from queryfit.adapters import Adapter, save_adapter
from queryfit.adapters.convert import export_adapter
from queryfit.data import QADataset, save_dataset
from queryfit.generation.documents import Passage
from queryfit.generation.journal import Journal
from queryfit.generation.pipeline import write_passages

DIM = 4
DATA = QADataset(
    queries={"q1": "what is a fox?"},
    corpus={"d1": "A fox is a small canid.", "d2": "Ünïcödé passage"},
    relevant_docs={"q1": ["d1"]},
)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _adapter() -> Adapter:
    rng = np.random.default_rng(0)
    return Adapter(
        type="linear",
        params={"weight": rng.normal(size=(DIM, DIM)), "bias": np.zeros(DIM)},
        dim=DIM,
        base_model={"id": "test:model"},
    )


def _journal(path: Path) -> None:
    journal = Journal(path / "journal.jsonl", {"llm": "heuristic"})
    journal.close()


WRITERS: list[tuple[str, Callable[[Path], object]]] = [
    ("adapter folder", lambda p: save_adapter(_adapter(), p / "adapter")),
    ("export npy", lambda p: export_adapter(_adapter(), p / "npy", format="npy")),
    ("export safetensors", lambda p: export_adapter(_adapter(), p / "st", format="safetensors")),
    ("export llamaindex", lambda p: export_adapter(_adapter(), p / "li", format="llamaindex")),
    ("json via _io", lambda p: write_json(p / "info.json", {"a": 1})),
    ("run.json", lambda p: write_json(p / "run.json", {"a": Path("x")}, default=str)),
    ("llamaindex dataset", lambda p: save_dataset(DATA, p / "d.json")),
    ("jsonl dataset", lambda p: save_dataset(DATA, p / "d.jsonl.gz")),
    ("beir dataset", lambda p: save_dataset(DATA, p / "beir")),
    ("passages", lambda p: write_passages([Passage("d-1", "text", "a.md")], p / "d" / "p.jsonl")),
    ("generation journal", _journal),
    ("_io text", lambda p: _io.write_text(p / "t.txt", "x")),
]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
@pytest.mark.parametrize(("name", "write"), WRITERS, ids=[n for n, _ in WRITERS])
def test_files_get_the_umask_mode(tmp_path: Path, mask: int, name: str, write) -> None:
    with umask(mask):
        write(tmp_path)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert files, f"{name} wrote nothing"
    for f in files:
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == 0o666 & ~mask, f"{name}: {f.relative_to(tmp_path)} is {oct(mode)}"
        assert not f.name.endswith(".tmp"), f"{name} left a temporary file {f.name}"
