"""Training: settings, losses and the trainer. Only this package needs torch."""

from __future__ import annotations

from typing import Any

from queryfit.training.config import TrainConfig

__all__ = ["EpochRecord", "FitResult", "TrainConfig", "fit_adapter", "fit_adapter_cv"]


def __getattr__(name: str) -> Any:
    # The trainer imports torch; load it only when training actually happens.
    if name in ("EpochRecord", "FitResult", "fit_adapter", "fit_adapter_cv"):
        from queryfit.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
