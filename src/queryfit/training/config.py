"""Training settings, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import TrainingError


@dataclass
class TrainConfig:
    """Every setting of a training run; stored in ``adapter.json`` so a run can be repeated."""

    adapter: str = "linear"
    loss: str = "corpus"  # "corpus": softmax over all passages; "in_batch": MNRL for huge corpora
    scale: float = 20.0  # inverse temperature on cosine similarities
    lr: float = 1e-4
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0  # AdamW decay toward zero; kept to replay other recipes
    identity_penalty: float = 0.01  # pulls the map toward the identity (the base model)
    batch_size: int = 32
    max_epochs: int = 50
    epochs: int | None = None  # fixed epoch count; None lets the dev split choose
    patience: int = 8  # epochs without dev improvement before stopping
    select_metric: str = "ndcg@10"
    min_improvement: float = 0.0  # dev gain over the identity required to ship the adapter
    shuffle: bool = True
    mask_shared_positives: bool = True
    bias: bool = True
    hidden_dim: int | None = None
    rank: int = 32
    refit: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        if self.loss not in ("corpus", "in_batch"):
            raise TrainingError(f"unknown loss {self.loss!r}; choose corpus or in_batch")
        if self.optimizer not in ("adam", "adamw"):
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose adam or adamw")
        for name in ("lr", "scale", "batch_size", "max_epochs"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 0:
            raise TrainingError(f"epochs must be >= 0, got {self.epochs}")
