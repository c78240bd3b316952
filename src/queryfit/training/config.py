"""Training settings, importable without torch (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from queryfit.errors import TrainingError

ADAPTER_KINDS = ("linear", "low_rank", "residual_mlp", "procrustes")
LOSSES = ("auto", "corpus", "sampled", "in_batch")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Every setting of a training run; stored in ``adapter.json`` so a run can be repeated."""

    adapter: str = "linear"  # linear | low_rank | residual_mlp | procrustes (closed form)
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
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.device not in DEVICES:
            raise TrainingError(
                f"unknown device {self.device!r} (--device); choose one of: {', '.join(DEVICES)}"
            )
        if self.device == "cuda":  # fail before minutes of embedding, not after
            import torch

            if not torch.cuda.is_available():
                raise TrainingError(
                    "device cuda (--device): torch sees no CUDA GPU on this machine; use "
                    "--device cpu or auto"
                )
        if self.optimizer not in ("adam", "adamw"):
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose adam or adamw")
        for name in (
            "lr",
            "scale",
            "batch_size",
            "max_epochs",
            "sampled_negatives",
            "corpus_softmax_max",
            "dev_max_queries",
            "dev_max_scores",
            "scale_patience",
        ):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive, got {getattr(self, name)}")
        if self.adapter not in ADAPTER_KINDS:
            raise TrainingError(
                f"unknown adapter type {self.adapter!r}; choose one of: {', '.join(ADAPTER_KINDS)}"
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
        if self.hard_negatives is not None and self.hard_negatives < 0:
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
        adapter="linear",
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
