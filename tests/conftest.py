"""Shared fixtures: a small real dataset, and a fast deterministic embedder for CLI tests."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def hashed_bag_of_words(texts: list[str], dim: int = 64) -> np.ndarray:
    """A model-free embedder: words hashed into buckets. Deterministic and instant."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            bucket = int.from_bytes(hashlib.md5(word.strip(".,?").encode()).digest()[:4], "little")
            out[i, bucket % dim] += 1.0
    return out + 1e-3


@pytest.fixture
def demo_dataset():
    from queryfit.demo import demo_dataset

    return demo_dataset()
