"""Local sentence-transformers models, loaded strictly offline.

queryfit must never reach for the network behind the user's back: a model is loaded from a local
folder or from the local Hugging Face cache, and anything else is an error that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from queryfit.embedders.base import BaseEmbedder, Kind
from queryfit.embedders.bundled import (
    BUNDLED_MODEL_ALIASES,
    BUNDLED_MODEL_NAME,
    default_model_path,
)
from queryfit.errors import EmbedderError, QueryfitError

PROVIDER = "sentence-transformers"
_INSTALL_HINT = "pip install 'queryfit[train]'"

# Loaded models shared across embedder objects: the same model with other prefixes (or a second
# get_embedder call) should not pay the load time and memory twice.
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def ensure_offline() -> None:
    """Forbid Hugging Face downloads for this process; set before the hub libraries import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def _require_package() -> None:
    for module in ("torch", "sentence_transformers"):
        if not _installed(module):
            raise EmbedderError(
                f"the {PROVIDER} provider needs {module.replace('_', '-')}, which is not "
                f"installed; install it with `{_INSTALL_HINT}`"
            )


def _looks_like_path(name: str) -> bool:
    # "org/model" is a hub name; anything anchored or with more structure is meant as a folder.
    return (
        name.startswith((".", "~", "/"))
        or "\\" in name
        or Path(name).is_absolute()
        or name.count("/") > 1
    )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _bundled_path_or_none() -> Path | None:
    try:
        return default_model_path()
    except EmbedderError:
        return None


def _offline_error(name: str) -> EmbedderError:
    return EmbedderError(
        f"model {name} is not available offline; pass a local folder path "
        f"({PROVIDER}:/path/to/model) or install it into the local Hugging Face cache on a "
        f"machine with network access (queryfit never downloads models); the bundled default "
        f"is {PROVIDER}:{BUNDLED_MODEL_NAME}"
    )


def _find_in_hf_cache(name: str) -> Path:
    """Locate a hub model in the local cache without any network access."""
    ensure_offline()
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise _offline_error(name) from exc
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        try:
            folder = Path(snapshot_download(repo_id=repo_id, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached, invalid id, ...: all mean "not offline"
            continue
        if folder.is_dir():
            return folder
    raise _offline_error(name)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' own weight-loading bar: queryfit's output is the store's one bar."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


#: Backends sentence-transformers can run a model on, and the extra each needs.
BACKENDS = {"torch": None, "onnx": "onnx", "openvino": "openvino"}
#: Query/document prefixes of well-known families whose folders may not declare them.
KNOWN_PROMPTS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"(^|[/_-])(multilingual-)?e5-(small|base|large)", re.I), "query: ", "passage: "),
    (
        re.compile(r"(^|[/_-])bge-(small|base|large)-en-v1\.5$", re.I),
        "Represent this sentence for searching relevant passages: ",
        "",
    ),
    (re.compile(r"(^|[/_-])nomic-embed-text", re.I), "search_query: ", "search_document: "),
)
_DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus", "text")


def model_prompts(path: Path | None, name: str) -> tuple[str, str] | None:
    """The (query, document) prefixes a model declares or is known to need, else None.

    Read from the folder's ``config_sentence_transformers.json`` ``prompts`` (e.g. e5, bge, gte
    models saved by recent sentence-transformers), or from a short list of well-known families.
    """
    if path is not None:
        try:
            config = json.loads(
                (path / "config_sentence_transformers.json").read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            config = {}
        prompts = config.get("prompts") if isinstance(config, dict) else None
        if isinstance(prompts, dict) and isinstance(prompts.get("query"), str):
            document = next(
                (prompts[k] for k in _DOCUMENT_PROMPT_NAMES if isinstance(prompts.get(k), str)),
                "",
            )
            if prompts["query"] or document:
                return prompts["query"], document
    for pattern, query, document in KNOWN_PROMPTS:
        if pattern.search(name):
            return query, document
    return None


#: Where a local model runs: "auto" is CUDA when torch sees a GPU, else the CPU.
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str, error: type[QueryfitError] = EmbedderError) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; others as given, but
    ``cuda`` (or ``cuda:N``) without a GPU is ``error`` naming ``--device``, before any work."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise error(
            f"device {device} (--device): torch sees no CUDA GPU on this machine; use "
            "--device cpu or auto"
        )
    return device


def _check_device(device: str) -> str:
    if device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise EmbedderError(f"unknown device {device!r} (--device); choose auto, cpu, cuda or cuda:N")


def _load_model(path: Path, device: str, model_id: str, backend: str = "torch") -> Any:
    device = resolve_device(device)
    key = (str(path.resolve()), device, backend)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        ensure_offline()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(
                f"cannot import sentence-transformers to load {model_id} ({exc}); "
                f"install it with `{_INSTALL_HINT}`"
            ) from exc
        extra = {} if backend == "torch" else {"backend": backend}
        try:
            with _quiet_transformers():
                model = SentenceTransformer(
                    str(path), device=device, local_files_only=True, **extra
                )
        except ImportError as exc:
            raise EmbedderError(
                f"the {backend} backend for {model_id} needs extra packages ({exc}); install "
                f"them with `pip install 'sentence-transformers[{BACKENDS[backend]}]'` or use "
                "backend='torch'"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - report any load failure with the model named
            raise EmbedderError(
                f"cannot load model {model_id} from {path}: {type(exc).__name__}: {exc}"
            ) from exc
        _MODELS[key] = model
        return model


class SentenceTransformerEmbedder(BaseEmbedder):
    """A sentence-transformers model from a local folder or the local HF cache.

    The model is loaded on the first embedding (or the first look at ``dim``), so resolving a spec
    stays cheap. ``model_id`` is a short stable name, not a path, so the store and adapters remain
    valid when the same model sits in another folder on another machine.

    Models that need query/document prompts (e5's ``"query: "``/``"passage: "``, bge's query
    instruction, or any ``prompts`` declared in the folder's config) get them as prefixes when no
    prefix is given; ``use_model_prompts=False`` turns that off. ``backend="onnx"`` or
    ``"openvino"`` runs the model on that sentence-transformers backend (its own store key).
    ``device`` is ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``
    or ``"cuda:N"``; it is not part of the store key (the same model on either device gives the
    same vectors up to float rounding).
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str = "auto",
        batch_size: int = 64,
        normalize: bool = False,
        backend: str = "torch",
        use_model_prompts: bool = True,
    ) -> None:
        if batch_size <= 0:
            raise EmbedderError(f"batch_size must be positive, not {batch_size}")
        if backend not in BACKENDS:
            raise EmbedderError(
                f"unknown sentence-transformers backend {backend!r}; choose one of "
                f"{', '.join(BACKENDS)}"
            )
        self.backend = backend
        _require_package()
        raw = str(name_or_path).strip()
        if not raw:
            raise EmbedderError("empty sentence-transformers model name")
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = _check_device(device)
        self.batch_size = batch_size
        self.max_batch_size = batch_size
        self.normalize = normalize
        self._model: Any = None
        self._dim: int | None = None

        local = Path(raw).expanduser()
        bundled = _bundled_path_or_none()
        if raw in BUNDLED_MODEL_ALIASES:
            self.path = default_model_path()
            self.name = BUNDLED_MODEL_NAME
        elif local.is_dir():
            self.path = local.resolve()
            if bundled is not None and _same_folder(local, bundled):
                self.name = BUNDLED_MODEL_NAME
            else:
                self.name = self.path.name
        elif _looks_like_path(raw) or local.exists():
            raise EmbedderError(
                f"model folder {raw} does not exist or is not a folder; pass the folder that "
                f"holds the model's modules.json (e.g. {PROVIDER}:/path/to/model)"
            )
        else:
            self.path = _find_in_hf_cache(raw)
            self.name = raw
        self.model_id = f"{PROVIDER}:{self.name}"
        if use_model_prompts and not query_prefix and not document_prefix:
            prompts = model_prompts(self.path, self.name)
            if prompts is not None:
                self.query_prefix, self.document_prefix = prompts

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer``; loads it on first use."""
        if self._model is None:
            self._model = _load_model(self.path, self.device, self.model_id, self.backend)
        return self._model

    @property
    def dim(self) -> int:  # type: ignore[override]
        """Embedding size as the model reports it (newer and older sentence-transformers API)."""
        if self._dim is None:
            model = self.model
            getter = getattr(model, "get_embedding_dimension", None) or getattr(
                model, "get_sentence_embedding_dimension", None
            )
            dim = getter() if getter is not None else None
            if not dim:
                # Some models do not declare their size: measure it once.
                dim = int(self._encode(["dimension probe"]).shape[1])
            self._dim = int(dim)
        return self._dim

    def _key_options(self) -> list[str]:
        opts = ["normalize"] if self.normalize else []
        return opts + ([f"backend={self.backend}"] if self.backend != "torch" else [])

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = self.model.encode(
            texts,
            prompt="",  # our prefixes only: never the model's default prompt behind our back
            batch_size=self.batch_size,
            show_progress_bar=False,  # the store draws the progress bar
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
        )
        return np.asarray(out, dtype=np.float32)

    def _embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        return self._encode(texts)
