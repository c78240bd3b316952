"""Training: losses and the trainer (torch is needed here only)."""

from .trainer import EpochRecord, FitResult, TrainConfig, fit_adapter

__all__ = ["EpochRecord", "FitResult", "TrainConfig", "fit_adapter"]
