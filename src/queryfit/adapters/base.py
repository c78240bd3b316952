"""The adapter as it is used at query time: plain numpy, no torch.

An adapter maps query vectors into the space where they rank the user's frozen passage vectors
better. Document vectors never pass through it, which is why nothing in a vector store needs to be
re-embedded. Each family is a pure function of a few named arrays, so the same arrays can be saved
as safetensors, trained with torch, or reimplemented in another language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from queryfit.adapters.record import BaseModel, DataFacts, TrainingFacts
from queryfit.errors import AdapterError

Params = dict[str, np.ndarray]


def _linear(x: np.ndarray, p: Params) -> np.ndarray:
    out = x @ p["weight"].T
    return out + p["bias"] if "bias" in p else out


def _residual_mlp(x: np.ndarray, p: Params) -> np.ndarray:
    hidden = np.maximum(x @ p["in_weight"].T + p["in_bias"], 0.0)
    return x + hidden @ p["out_weight"].T + p["out_bias"]


def _low_rank(x: np.ndarray, p: Params) -> np.ndarray:
    return x + (x @ p["down"].T) @ p["up"].T


def _identity(x: np.ndarray, p: Params) -> np.ndarray:
    return x


# family name -> (apply function, names of the arrays it needs)
FAMILIES: dict[str, tuple[Callable[[np.ndarray, Params], np.ndarray], tuple[str, ...]]] = {
    "identity": (_identity, ()),
    "linear": (_linear, ("weight",)),
    "residual_mlp": (_residual_mlp, ("in_weight", "in_bias", "out_weight", "out_bias")),
    "low_rank": (_low_rank, ("down", "up")),
}


@dataclass
class Adapter:
    """A trained query-side map ``q -> f(q)`` plus everything needed to use it correctly.

    ``type`` is the family (:data:`FAMILIES`), ``params`` its named arrays. ``base_model`` says
    which model's query vectors it maps; ``training`` and ``data`` record how it was made (see
    :mod:`queryfit.adapters.record`, the ``adapter.json`` schema), ``None`` for an adapter built
    by hand or imported (``imported_from`` then says from what).
    """

    type: str
    params: Params
    dim: int
    base_model: BaseModel = field(default_factory=BaseModel)
    similarity: str = "cosine"
    normalize: bool = True
    training: TrainingFacts | None = None
    data: DataFacts | None = None
    imported_from: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.type not in FAMILIES:
            raise AdapterError(
                f"unknown adapter type {self.type!r}; known types: {', '.join(sorted(FAMILIES))}"
            )
        missing = [name for name in FAMILIES[self.type][1] if name not in self.params]
        if missing:
            raise AdapterError(f"{self.type} adapter is missing arrays: {', '.join(missing)}")
        self.params = {k: np.asarray(v, dtype=np.float32) for k, v in self.params.items()}
        if isinstance(self.base_model, Mapping):  # {"id": ..., "query_prefix": ...} by hand
            self.base_model = BaseModel(**self.base_model)

    @classmethod
    def identity(cls, dim: int, **kwargs: Any) -> Adapter:
        """The adapter that changes nothing: what ships when training does not beat the base."""
        return cls(type="identity", params={}, dim=dim, **kwargs)

    @property
    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map query vectors ([n, dim] or [dim]) to adapted query vectors of the same shape."""
        x = np.asarray(vectors, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AdapterError(
                f"adapter expects query vectors of dimension {self.dim}, got shape "
                f"{tuple(np.shape(vectors))}; embed queries with the adapter's base model "
                f"({self.base_model.id or 'unknown'})"
            )
        out = FAMILIES[self.type][0](x, self.params).astype(np.float32, copy=False)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return out[0] if single else out

    __call__ = transform

    def describe(self) -> Mapping[str, Any]:
        """A short summary for logs and reports."""
        return {
            "type": self.type,
            "dim": self.dim,
            "parameters": self.num_parameters,
            "base_model": self.base_model.id,
        }
