"""``adapter.json``: the typed, versioned record of what an adapter is and how it was made.

Read and written here only. Everything else (evaluation, the report, the CLI, the server) reads
the typed fields, never the raw JSON, so a field has one name and one meaning everywhere.

Format history:

* **1** (queryfit 0.1): training facts flat at the top level (``decision``, ``history``,
  ``dev``, ``split``...), the training settings under ``training``.
* **2**: training facts grouped under ``training`` (``config`` holds the settings); the base model
  also records the endpoint and requested dimensions of an API model (never a key), so
  ``evaluate`` and ``serve`` need no endpoint flags again. Version 1 files still load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from queryfit.errors import AdapterError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_FIX = "retrain the adapter with `queryfit train` or restore the folder from a backup"


@dataclass
class BaseModel:
    """The embedding model whose query vectors the adapter maps (documents stay its vectors)."""

    id: str | None = None
    query_prefix: str = ""
    document_prefix: str = ""
    endpoint: str | None = None  # host/path of an API model's endpoint; never a key
    dimensions: int | None = None  # shorter vectors asked of an API model

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments for ``get_embedder(self.id, ...)`` that rebuild the same model."""
        options: dict[str, Any] = {
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
        }
        if self.endpoint:
            options["base_url"] = self.endpoint
        if self.dimensions:
            options["dimensions"] = self.dimensions
        return options


@dataclass
class DataFacts:
    """The pairs an adapter was trained on: counts, a content fingerprint, never text."""

    fingerprint: str | None = None
    source: str | None = None  # the file or folder given; None for an in-memory dataset
    queries: int = 0
    passages: int = 0
    # 16-hex sha256 prefixes of the passages training pairs point to, and of the training
    # questions (evaluation/coverage.py); None when there were too many to record.
    covered_passages: list[str] | None = None
    query_fingerprints: list[str] | None = None
    # Trained through --index: the index read (URI, passages) and its model check.
    index: dict[str, Any] | None = None


@dataclass
class DevScores:
    """The dev metric of the identity (base) and of the shipped adapter."""

    metric: str = "ndcg@10"
    base: float | None = None
    adapted: float | None = None


@dataclass
class SplitFacts:
    """How dev was held out: ``cv_folds`` > 0 means k-fold cross-validation."""

    train_queries: int = 0
    dev_queries: int = 0
    cv_folds: int = 0
    description: str = ""


@dataclass
class EmbeddingCost:
    """What training's vectors cost: model calls, texts embedded, texts and (with an index)
    passage vectors read instead."""

    model_calls: int = 0
    texts_from_store: int = 0
    texts_embedded: int = 0
    passage_vectors_from_index: int = 0


@dataclass
class TrainingFacts:
    """What training did and why this adapter (or the identity) ships."""

    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig + split settings
    decision: str = ""
    shipped_identity: bool = False
    best_epoch: int = 0
    dev: DevScores = field(default_factory=DevScores)
    history: list[dict[str, Any]] = field(default_factory=list)  # one EpochRecord per epoch
    seconds: float | None = None
    split: SplitFacts = field(default_factory=SplitFacts)
    blend: float = 1.0
    search: str | None = None  # the --search table, when a search ran
    embedding: EmbeddingCost = field(default_factory=EmbeddingCost)
    loss_used: str | None = None  # the loss trained with (config.loss "auto" resolved)
    stages: dict[str, Any] = field(default_factory=dict)  # seconds per training stage


class AdapterLike(Protocol):
    """What :func:`to_json` reads of an :class:`~queryfit.adapters.Adapter`."""

    type: str
    dim: int
    num_parameters: int
    base_model: BaseModel
    similarity: str
    normalize: bool
    training: TrainingFacts | None
    data: DataFacts | None
    imported_from: dict[str, Any] | None


def to_json(adapter: AdapterLike, queryfit_version: str) -> dict[str, Any]:
    """The ``adapter.json`` object (current format) describing ``adapter``."""
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "queryfit_version": queryfit_version,
        "type": adapter.type,
        "dim": adapter.dim,
        "parameters": adapter.num_parameters,
        "base_model": asdict(adapter.base_model),
        "similarity": adapter.similarity,
        "normalize": adapter.normalize,
    }
    for name in ("training", "data"):
        facts = getattr(adapter, name)
        if facts is not None:
            out[name] = asdict(facts)
    if adapter.imported_from is not None:
        out["imported_from"] = adapter.imported_from
    return out


def read_metadata(
    meta: Any, source: str, *, types: Any = None, similarities: Any = None
) -> dict[str, Any]:
    """The keyword arguments of :class:`~queryfit.adapters.Adapter` (all but ``params``) from an
    ``adapter.json`` object of any readable format; ``types`` and ``similarities`` are the
    allowed values of those fields.

    Raises AdapterError naming the file (``source``) and the field when it is malformed.
    """
    version = meta.get("format_version", 1) if isinstance(meta, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        raise AdapterError(
            f"{source} is not a queryfit adapter config (expected an object with an integer "
            f"format_version); {_FIX}"
        )
    if version > FORMAT_VERSION:
        raise AdapterError(
            f"{source} was written by a newer queryfit (format {version}); upgrade queryfit"
        )
    if version not in READABLE_VERSIONS:
        raise AdapterError(f"{source}: unknown format_version {version}; retrain the adapter")
    if version == 1:
        meta = _upgrade_v1(meta)
    reader = _Reader(meta, source)
    return {
        "type": reader.text("type", required=True, choices=types),
        "dim": reader.positive_int("dim"),
        "base_model": reader.section("base_model", BaseModel) or BaseModel(),
        "similarity": reader.text("similarity", choices=similarities) or "cosine",
        "normalize": reader.flag("normalize", True),
        "training": reader.section("training", TrainingFacts),
        "data": reader.section("data", DataFacts),
        "imported_from": reader.mapping("imported_from"),
    }


# -- version 1 --------------------------------------------------------------------------------

_V1_TRAINING_KEYS = {
    "decision": "decision",
    "shipped_identity": "shipped_identity",
    "best_epoch": "best_epoch",
    "dev": "dev",
    "history": "history",
    "train_seconds": "seconds",
    "blend": "blend",
    "search": "search",
    "split": "split",
    "embedding": "embedding",
}


def _upgrade_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 1 kept training facts flat; group them under ``training`` as format 2 does."""
    out = {k: v for k, v in meta.items() if k not in _V1_TRAINING_KEYS and k != "training"}
    if "training" in meta or any(k in meta for k in _V1_TRAINING_KEYS):
        training: dict[str, Any] = {"config": meta.get("training") or {}}
        for old, new in _V1_TRAINING_KEYS.items():
            if old in meta:
                training[new] = meta[old]
        split = training.get("split")
        if isinstance(split, dict) and "dev_split" in meta:
            training["split"] = split | {"description": meta["dev_split"]}
        out["training"] = training
    return out


# -- reading with one clear error per bad field ------------------------------------------------


class _Reader:
    def __init__(self, data: Mapping[str, Any], source: str, where: str = "") -> None:
        self.data, self.source, self.where = data, source, where

    def fail(self, name: str, want: str) -> AdapterError:
        if name not in self.data:
            return AdapterError(f"{self.source} lacks the field {self.where}{name!r}; {_FIX}")
        return AdapterError(
            f"{self.source}: {self.where}{name} is {self.data[name]!r}, expected {want}; {_FIX}"
        )

    def text(self, name: str, *, required: bool = False, choices: Any = None) -> str | None:
        value = self.data.get(name)
        if value is None and not required:
            return None
        want = f"one of {', '.join(sorted(choices))}" if choices else "a string"
        if not isinstance(value, str) or not value or (choices and value not in choices):
            raise self.fail(name, want)
        return value

    def int(self, name: str, default: int) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "an integer")
        return value

    def positive_int(self, name: str) -> int:
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(name, "a positive integer")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, "an object")
        return value

    def section(self, name: str, cls: type) -> Any:
        """A nested dataclass; unknown keys are ignored (newer minor fields), types checked."""
        value = self.mapping(name)
        if value is None:
            return None
        kwargs = {}
        for f in fields(cls):
            if f.name in value:
                kwargs[f.name] = _checked(value[f.name], f, self.source, f"{self.where}{name}.")
        return cls(**kwargs)


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "str | None": (str, type(None)),
    "int": (int,),
    "int | None": (int, type(None)),
    "float | None": (int, float, type(None)),
    "float": (int, float),
    "bool": (bool,),
    "dict[str, Any] | None": (dict, type(None)),
    "list[str] | None": (list, type(None)),
    "list[dict[str, Any]]": (list,),
    "dict[str, Any]": (dict,),
}


def _checked(value: Any, f: Any, source: str, where: str) -> Any:
    """``value`` if it fits the field's declared type, else an AdapterError naming the field."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    nested = {"DevScores": DevScores, "SplitFacts": SplitFacts, "EmbeddingCost": EmbeddingCost}
    if kind in nested:
        if not isinstance(value, dict):
            raise _Reader({f.name: value}, source, where).fail(f.name, "an object")
        return _Reader({f.name: value}, source, where).section(f.name, nested[kind])
    allowed = _SIMPLE_TYPES.get(kind)
    ok = allowed is None or (
        isinstance(value, allowed)
        and not (isinstance(value, bool) and bool not in allowed and int in allowed)
    )
    if not ok:
        want = {"str": "a string", "str | None": "a string", "int": "an integer"}.get(kind)
        raise _Reader({f.name: value}, source, where).fail(f.name, want or f"of type {kind}")
    return value
