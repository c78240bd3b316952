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
#: Arrays a family may carry besides the ones it needs.
OPTIONAL_ARRAYS: dict[str, tuple[str, ...]] = {"linear": ("bias",)}
#: Each array's shape in terms of the dimension ``d`` and the family's inner size
#: (``r``: rank of low_rank, ``h``: hidden units of residual_mlp), which the first array fixes.
SHAPES: dict[str, dict[str, tuple[str, ...]]] = {
    "identity": {},
    "linear": {"weight": ("d", "d"), "bias": ("d",)},
    "low_rank": {"down": ("r", "d"), "up": ("d", "r")},
    "residual_mlp": {
        "in_weight": ("h", "d"),
        "in_bias": ("h",),
        "out_weight": ("d", "h"),
        "out_bias": ("d",),
    },
}
SIMILARITIES = ("cosine", "dot")


def check_dim(dim: Any) -> int:
    """``dim`` as an int, or AdapterError: a float, string or bool dimension is a damaged record."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) <= 0:
        raise AdapterError(f"dim is {dim!r}, not a positive integer (the embedding dimension)")
    return int(dim)


def array_problem(adapter_type: str, params: Mapping[str, Any], dim: int) -> str | None:
    """What is wrong with ``params`` for an adapter of this type and dimension, naming the array;
    ``None`` when they fit. Checked on construction and on load, because arrays of the
    wrong shape or with NaN/inf would otherwise turn every query into a NaN row."""
    needed = FAMILIES[adapter_type][1]
    shapes = SHAPES[adapter_type]
    if not isinstance(params, Mapping):
        return f"params is a {type(params).__name__}, not a mapping of array names to arrays"
    missing = [name for name in needed if name not in params]
    if missing:
        return f"{adapter_type} adapter is missing arrays: {', '.join(missing)}"
    extra = sorted(
        str(n) for n in params if n not in needed + OPTIONAL_ARRAYS.get(adapter_type, ())
    )
    if extra:
        return (
            f"{adapter_type} adapter has unexpected arrays: {', '.join(extra)} "
            f"(it holds {', '.join(needed + OPTIONAL_ARRAYS.get(adapter_type, ())) or 'none'})"
        )
    sizes: dict[str, int] = {"d": dim}
    for name in shapes:
        if name not in params:
            continue
        value = params[name]
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:  # ragged lists and the like
            return f"array {name!r} is not a numeric array ({exc})"
        if array.dtype == np.bool_ or array.dtype.kind not in "fiu":
            return f"array {name!r} has dtype {array.dtype}, not a real number type"
        want = shapes[name]
        if array.ndim != len(want):
            return (
                f"array {name!r} has shape {tuple(array.shape)}, expected {len(want)} "
                f"dimension(s) ({', '.join(want)}) with d = {dim}"
            )
        for axis, (letter, got) in enumerate(zip(want, array.shape, strict=True)):
            expected = sizes.setdefault(letter, int(got))
            if got != expected or got == 0:
                shown = tuple(sizes.get(x, x) for x in want)
                return (
                    f"array {name!r} has shape {tuple(array.shape)}, expected "
                    f"{shown} (axis {axis} must be {letter} = {expected}, d = dim = {dim})"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(array.astype(np.float32))
        if not finite.all():
            bad = int((~finite).sum())
            return f"array {name!r} holds {bad} NaN or infinite value(s) (as float32)"
    return None


def _rows(bad: np.ndarray) -> str:
    """``rows 3, 7, 9`` (at most five listed) for a boolean mask over rows."""
    idx = np.flatnonzero(bad)
    listed = ", ".join(str(i) for i in idx[:5]) + (", ..." if len(idx) > 5 else "")
    return f"{len(idx)} row(s) ({listed})"


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
        fix = "; build it from arrays that fit its type and dim (or load a saved folder)"
        if not isinstance(self.type, str) or self.type not in FAMILIES:
            raise AdapterError(
                f"unknown adapter type {self.type!r}; known types: {', '.join(sorted(FAMILIES))}"
            )
        try:
            self.dim = check_dim(self.dim)
        except AdapterError as exc:
            raise AdapterError(f"{exc}{fix}") from None
        problem = array_problem(self.type, self.params, self.dim)
        if problem is not None:
            raise AdapterError(problem + fix)
        if isinstance(self.base_model, Mapping):  # {"id": ..., "query_prefix": ...} by hand
            unknown = sorted(set(self.base_model) - set(BaseModel.__dataclass_fields__))
            if unknown:
                raise AdapterError(f"base_model has unknown fields {', '.join(unknown)}" + fix)
            self.base_model = BaseModel(**self.base_model)
        if not isinstance(self.base_model, BaseModel):
            raise AdapterError(
                f"base_model is a {type(self.base_model).__name__}, not a BaseModel or a mapping "
                "with the model's id and prefixes" + fix
            )
        for key in ("id", "query_prefix", "document_prefix", "endpoint"):
            value = getattr(self.base_model, key)
            if value is not None and not isinstance(value, str):
                raise AdapterError(f"base_model {key} is {value!r}, not a string" + fix)
        if self.similarity not in SIMILARITIES:
            raise AdapterError(
                f"similarity is {self.similarity!r}, not one of {', '.join(SIMILARITIES)}" + fix
            )
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise AdapterError(f"normalize is {self.normalize!r}, not true or false" + fix)
        self.normalize = bool(self.normalize)
        self.params = {k: np.asarray(v, dtype=np.float32) for k, v in self.params.items()}

    @classmethod
    def identity(cls, dim: int, **kwargs: Any) -> Adapter:
        """The adapter that changes nothing: what ships when training does not beat the base."""
        return cls(type="identity", params={}, dim=dim, **kwargs)

    @property
    def num_parameters(self) -> int:
        return int(sum(v.size for v in self.params.values()))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map query vectors ([n, dim] or [dim]) to adapted query vectors of the same shape."""
        try:
            x = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise AdapterError(
                f"query vectors are not a numeric array ({exc}); pass the embedder's output, "
                "an array of shape [n, dim] or [dim]"
            ) from None
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise AdapterError(
                f"adapter expects query vectors of dimension {self.dim}, got shape "
                f"{tuple(np.shape(vectors))}; embed queries with the adapter's base model "
                f"({self.base_model.id or 'unknown'})"
            )
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise AdapterError(
                f"{_rows(~finite)} of the query vectors hold NaN or inf; the embedder returned "
                "broken vectors: check the model (or its endpoint) and embed those queries again"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            out = FAMILIES[self.type][0](x, self.params).astype(np.float32, copy=False)
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            raise AdapterError(
                f"the adapter overflows to NaN or inf on {_rows(~finite)} of the query vectors "
                "(its weights are far too large for them); retrain the adapter"
            )
        if self.normalize:  # norms in float64: squares of large float32 values would overflow
            norms = np.linalg.norm(out.astype(np.float64), axis=1, keepdims=True)
            out = (out / np.maximum(norms, 1e-12)).astype(np.float32)
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


def adapter_matrix(adapter: Adapter) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with ``adapter(q) = normalize?(q @ W.T + b)`` for the linear families.

    identity, linear and low_rank adapters are affine maps; a residual MLP is not, and raises.
    """
    dim = adapter.dim
    p = adapter.params
    if adapter.type == "identity":
        return np.eye(dim, dtype=np.float32), np.zeros(dim, np.float32)
    if adapter.type == "linear":
        return p["weight"].astype(np.float32), p.get("bias", np.zeros(dim, np.float32))
    if adapter.type == "low_rank":
        return (np.eye(dim, dtype=np.float32) + p["up"] @ p["down"]).astype(np.float32), np.zeros(
            dim, np.float32
        )
    raise AdapterError(
        f"a {adapter.type} adapter is not a matrix; export its arrays with format='npy' (all "
        "arrays are written with the formula), or train a linear or low_rank adapter"
    )
