"""Training settings, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from queryfit.errors import TrainingError
from queryfit.evaluation.metrics import parse_metric

ADAPTER_TYPES = ("linear", "low_rank", "residual_mlp", "procrustes")
LOSSES = ("auto", "corpus", "sampled", "in_batch")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Every setting of a training run; stored in ``adapter.json`` so a run can be repeated."""

    adapter_type: str = "linear"  # linear | low_rank | residual_mlp | procrustes (closed form)
    # "corpus": softmax over every passage; "sampled": over shared random negatives plus mined hard
    # negatives, logQ-corrected; "in_batch": MNRL; "auto": corpus while training queries x
    # passages <= corpus_softmax_max, else sampled (docs/benchmarks.md, "Scale").
    loss: str = "auto"
    corpus_softmax_max: int = 50_000_000
    # Sampled softmax: uniform random passages shared by a batch (weighted by n_passages / this)...
    sampled_negatives: int = 1024
    scale: float = 20.0  # inverse temperature on cosine similarities
    lr: float = 3e-4
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0  # AdamW decay toward zero; kept to replay other recipes
    identity_penalty: float = 0.03  # pulls the map toward the identity (the base model)
    batch_size: int = 32
    max_epochs: int = 50
    epochs: int | None = None  # fixed epoch count; None lets the dev split choose
    patience: int = 5  # epochs without dev improvement before stopping
    # ...with the sampled softmax: its epochs (over 10,000s of pairs) are thousands of steps each.
    scale_patience: int = 2
    select_metric: str = "ndcg@10"
    min_improvement: float = 0.0  # dev gain over the identity required to ship the adapter
    # ...and the gain must exceed gate_z standard errors of the paired per-query dev gain.
    gate_z: float = 1.5
    shuffle: bool = True
    mask_shared_positives: bool = True
    bias: bool = True
    hidden_dim: int | None = None
    rank: int = 32
    refit: bool = True
    seed: int = 0
    # Blend alpha*adapted + (1-alpha)*base, alpha chosen on dev from blend_grid (1.0 = no blend).
    blend: bool = True
    blend_grid: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    # Negatives per query mined with the base model: for in_batch (default 0) and sampled
    # (default 32); None takes the loss's default.
    hard_negatives: int | None = None
    # Passages this similar (cosine) to a relevant one are never negatives, in either loss.
    duplicate_threshold: float = 0.95
    # Label smoothing of the corpus softmax (0 = off).
    label_smoothing: float = 0.1
    # Choose epochs, blend and the gate by k-fold cross-validation when the data has at most
    # cv_max_queries queries (cheap there, and a single small dev split is too noisy); a single
    # dev split above that, or with cv_folds < 2. Used by ``queryfit train``'s default split.
    cv_folds: int = 3
    cv_max_queries: int = 5000
    # Dev queries scored after each epoch at most (a bounded sample of the dev split when the data
    # is large: each scoring searches every passage), and at most dev_max_scores // passages of
    # them (1,000 at 1M passages). Used by ``queryfit train``'s default split.
    dev_max_queries: int = 2000
    dev_max_scores: int = 1_000_000_000
    # Where torch trains: "auto" is CUDA when torch sees a GPU, else the CPU.
    device: str = "auto"

    def hard_negatives_for(self, loss: str) -> int:
        """Mined negatives per query for ``loss`` (the field, or that loss's default)."""
        if self.hard_negatives is not None:
            return self.hard_negatives
        return 32 if loss == "sampled" else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["blend_grid"] = list(self.blend_grid)
        return out

    def validate(self) -> None:
        """Reject a setting that cannot train before any work is done, naming the setting, its
        command-line flag and the range it must lie in."""
        choices = {
            "loss": LOSSES,
            "device": DEVICES,
            "optimizer": ("adam", "adamw"),
            "adapter_type": ADAPTER_TYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                _bad(name, getattr(self, name), f"one of {', '.join(allowed)}")
        for name, (low, high, low_open) in _NUMBER_RANGES.items():
            value = getattr(self, name)
            if value is None and name in ("epochs", "hidden_dim", "hard_negatives"):
                continue
            integral = name in _INTEGERS
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (not integral or float(value).is_integer())
                and math.isfinite(value)
                and (value > low if low_open else value >= low)
                and value <= high
            )
            if not ok:
                kind = "a whole number" if integral else "a number"
                side = f"above {_shown(low)}" if low_open else f"from {_shown(low)}"
                _bad(name, value, f"{kind} {side} up to {_shown(high)}")
        if self.device == "cuda":  # fail before minutes of embedding, not after
            from queryfit.embedders.sentence_transformers import resolve_device

            resolve_device(self.device, TrainingError)
        if self.cv_folds == 1:
            _bad("cv_folds", 1, "0 (one dev split) or at least 2 folds")
        if not self.blend_grid or any(
            not (math.isfinite(a) and 0.0 < a <= 1.0) for a in self.blend_grid
        ):
            _bad("blend_grid", self.blend_grid, "values in (0, 1]")
        try:
            parse_metric(self.select_metric)
        except ValueError as exc:
            raise TrainingError(f"select_metric: {exc}") from None


# Allowed values of the numeric settings: (low, high, low excluded). Wide enough for any sensible
# run, narrow enough that NaN, 1e30 or a billion epochs fail at once instead of after hours.
_NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, True),
    "scale": (0.0, 1000.0, True),
    "weight_decay": (0.0, 100.0, False),
    "identity_penalty": (0.0, 1e6, False),
    "label_smoothing": (0.0, 0.999, False),
    "batch_size": (1, 1_000_000, False),
    "max_epochs": (1, 10_000, False),
    "epochs": (0, 10_000, False),
    "patience": (1, 10_000, False),
    "min_improvement": (-1.0, 1.0, False),
    "gate_z": (0.0, 100.0, False),
    "hidden_dim": (1, 100_000, False),
    "rank": (1, 100_000, False),
    "cv_folds": (0, 100, False),
    "cv_max_queries": (0, 10**9, False),
    "corpus_softmax_max": (1, 10**15, False),
    "sampled_negatives": (1, 10**7, False),
    "scale_patience": (1, 10_000, False),
    "dev_max_queries": (1, 10**9, False),
    "dev_max_scores": (1, 10**15, False),
    "hard_negatives": (0, 10_000, False),
    "duplicate_threshold": (0.0, 1.0, True),
    "seed": (0, 2**32 - 1, False),
}
_INTEGERS = {
    "batch_size",
    "max_epochs",
    "epochs",
    "patience",
    "hidden_dim",
    "rank",
    "cv_folds",
    "cv_max_queries",
    "corpus_softmax_max",
    "sampled_negatives",
    "scale_patience",
    "dev_max_queries",
    "dev_max_scores",
    "hard_negatives",
    "seed",
}


def _shown(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


def _bad(name: str, value: Any, want: str) -> None:
    flag = "--" + name.replace("_", "-")
    raise TrainingError(f"{name} ({flag}) must be {want}, not {value!r}")


def llamaindex_recipe() -> TrainConfig:
    """LlamaIndex's ``EmbeddingAdapterFinetuneEngine`` defaults, to replay on cached vectors.

    A linear layer without bias from the identity, in-batch MNRL at scale 20 with no masking of
    shared passages, AdamW lr 2e-5, batch 10, 4 epochs, data in file order, no dev split.
    """
    return TrainConfig(
        adapter_type="linear",
        bias=False,
        loss="in_batch",
        scale=20.0,
        optimizer="adamw",
        lr=2e-5,
        weight_decay=0.01,
        identity_penalty=0.0,
        label_smoothing=0.0,
        batch_size=10,
        epochs=4,
        shuffle=False,
        mask_shared_positives=False,
        blend=False,
    )
