"""Training settings, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from queryfit.errors import TrainingError

ADAPTER_TYPES = ("linear", "low_rank", "residual_mlp", "procrustes")


@dataclass
class TrainConfig:
    """Every setting of a training run; stored in ``adapter.json`` so a run can be repeated."""

    adapter_type: str = "linear"  # linear | low_rank | residual_mlp | procrustes (closed form)
    loss: str = "corpus"  # "corpus": softmax over all passages; "in_batch": MNRL for huge corpora
    scale: float = 20.0  # inverse temperature on cosine similarities
    lr: float = 3e-4
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0  # AdamW decay toward zero; kept to replay other recipes
    identity_penalty: float = 0.03  # pulls the map toward the identity (the base model)
    batch_size: int = 32
    max_epochs: int = 50
    epochs: int | None = None  # fixed epoch count; None lets the dev split choose
    patience: int = 5  # epochs without dev improvement before stopping
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
    # Extra negatives per query for the in_batch loss, mined with the base model.
    hard_negatives: int = 0
    # Passages this similar (cosine) to a relevant one are never negatives, in either loss.
    duplicate_threshold: float = 0.95
    # Label smoothing of the corpus softmax (0 = off).
    label_smoothing: float = 0.1
    # Choose epochs, blend and the gate by k-fold cross-validation when the data has at most
    # cv_max_queries queries (cheap there, and a single small dev split is too noisy); a single
    # dev split above that, or with cv_folds < 2. Used by ``queryfit train``'s default split.
    cv_folds: int = 3
    cv_max_queries: int = 5000

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["blend_grid"] = list(self.blend_grid)
        return out

    def validate(self) -> None:
        if self.loss not in ("corpus", "in_batch"):
            raise TrainingError(f"unknown loss {self.loss!r}; choose corpus or in_batch")
        if self.optimizer not in ("adam", "adamw"):
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose adam or adamw")
        for name in ("lr", "scale", "batch_size", "max_epochs"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, got {getattr(self, name)}")
        if self.adapter_type not in ADAPTER_TYPES:
            raise TrainingError(
                f"unknown adapter type {self.adapter_type!r}; choose one of: "
                f"{', '.join(ADAPTER_TYPES)}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TrainingError(
                f"label_smoothing (--label-smoothing) must be in [0, 1), got {self.label_smoothing}"
            )
        if self.gate_z < 0:
            raise TrainingError(f"gate_z must be >= 0 (0: any dev gain ships), got {self.gate_z}")
        if self.cv_folds < 0:
            raise TrainingError(
                f"cv_folds (--cv-folds) must be >= 0 (0: one dev split), got {self.cv_folds}"
            )
        if self.hard_negatives < 0:
            raise TrainingError(f"hard_negatives must be >= 0, got {self.hard_negatives}")
        if not self.blend_grid or any(not 0.0 < a <= 1.0 for a in self.blend_grid):
            raise TrainingError(f"blend_grid values must lie in (0, 1], got {self.blend_grid}")
        if self.epochs is not None and self.epochs < 0:
            raise TrainingError(f"epochs must be >= 0, got {self.epochs}")


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
