"""What the seed-10k benchmarks share: where the data lives, the command line, the skip rule,
and the in-corpus split (first question of each passage vs its second)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Hashable, Iterable
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-10k"


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the script's first docstring line, with ``--store``."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    out.add_argument("--store", default=".queryfit/benchmark.sqlite")
    return out


def data_present() -> bool:
    """True when ../shared/data/seed-10k is there; otherwise say the run is skipped, and why."""
    if (DATA / "lyft_train.json").is_file():
        return True
    print(f"skipped: {DATA} is absent (needs ../shared/data/seed-10k)", file=sys.stderr)
    return False


def first_and_second(passage_of: Iterable[Hashable]) -> tuple[list[int], list[int]]:
    """Rows of each passage's first question, and of the questions after it, in order."""
    seen: set[Hashable] = set()
    first: list[int] = []
    later: list[int] = []
    for row, passage in enumerate(passage_of):
        (later if passage in seen else first).append(row)
        seen.add(passage)
    return first, later
