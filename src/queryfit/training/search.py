"""A small, deterministic search over training settings, scored on the dev split only.

Each candidate is the default configuration with a few fields changed; each is trained with the
same dev split and seed, so the search is reproducible. The winner is the candidate with the best
dev score after its own epoch choice and blend (ties go to the earlier candidate, the grid is
ordered from the most conservative setting). Every try is reported, not just the winner.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Any

from queryfit.training.config import TrainConfig
from queryfit.vectors import RetrievalVectors

# lr x identity pull x temperature: the levers that mattered most on the seed data's dev splits.
DEFAULT_GRID: dict[str, tuple[Any, ...]] = {
    "lr": (1e-4, 3e-4, 1e-3),
    "identity_penalty": (0.03, 0.0),
    "scale": (20.0, 50.0),
}


@dataclass
class SearchTry:
    changes: dict[str, Any]
    dev_score: float | None
    identity_score: float | None
    best_epoch: int
    blend: float
    shipped_identity: bool
    seconds: float


@dataclass
class SearchResult:
    best_config: TrainConfig
    tries: list[SearchTry]

    def table(self) -> str:
        """The tries as a plain-text table, best marked with ``*``."""
        best = self.best_index
        lines = []
        for i, t in enumerate(self.tries):
            changes = ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.changes.items()
            )
            score = "-" if t.dev_score is None else f"{t.dev_score:.4f}"
            lines.append(
                f"{'*' if i == best else ' '} {changes:<46} dev {score} epoch {t.best_epoch:>3} "
                f"blend {t.blend:g}{' (identity)' if t.shipped_identity else ''}"
            )
        return "\n".join(lines)

    @property
    def best_index(self) -> int:
        return _best(self.tries)


def _best(tries: list[SearchTry]) -> int:
    scored = [
        (t.dev_score if t.dev_score is not None else float("-inf"), -i) for i, t in enumerate(tries)
    ]
    return -max(scored)[1]


def search(
    train: RetrievalVectors,
    dev: RetrievalVectors | list[RetrievalVectors],
    base: TrainConfig | None = None,
    grid: dict[str, tuple[Any, ...]] | None = None,
    *,
    on_try: Any = None,
) -> SearchResult:
    """Train every grid combination on ``train``, score it on ``dev``, return all tries.

    Only ``dev`` decides; test data never enters. Deterministic for a given ``base.seed``.
    """
    from queryfit.training.trainer import fit_adapter

    base = base or TrainConfig()
    grid = grid if grid is not None else DEFAULT_GRID
    keys = list(grid)
    tries: list[SearchTry] = []
    for values in itertools.product(*(grid[k] for k in keys)):
        changes = dict(zip(keys, values, strict=True))
        config = replace(base, **changes)
        start = time.perf_counter()
        result = fit_adapter(train, config, dev=dev, refit_on=None)
        found = SearchTry(
            changes,
            result.best_score,
            result.identity_score,
            result.best_epoch,
            result.blend,
            result.shipped_identity,
            time.perf_counter() - start,
        )
        tries.append(found)
        if on_try is not None:
            on_try(found)
    best = tries[_best(tries)]
    return SearchResult(replace(base, **best.changes), tries)
