"""Flags shared by several verbs, declared once, each group built into one settings object.

A verb asks for a group with :func:`flags`: ``train`` gets a :class:`ModelChoice` and a
:class:`TrainChoice`, ``generate`` a ``ModelChoice`` and a ``GenerateConfig``, ``run`` all three.
The flags of a group are added to the verb's signature (so ``--help`` shows them) and handed to
the verb as the one object they describe, so no verb can lack a flag another has, and every flag
means one thing everywhere. Defaults come from the settings objects themselves.

Renamed flags keep working for one release and print a deprecation line: ``train --adapter``
(the family) is ``--adapter-type``; in ``generate``/``run``, ``--base-url``/``--api-key`` for the
LLM are ``--llm-base-url``/``--llm-api-key`` (``--base-url`` is the embedder's endpoint there, as
in every other verb, whenever ``--model`` names an API model).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from queryfit.embedders.registry import is_api_model, provider_of
from queryfit.errors import EmbedderError
from queryfit.generation.config import GenerateConfig
from queryfit.generation.filters import FilterConfig
from queryfit.training.config import TrainConfig

DEFAULTS = TrainConfig()
GEN_DEFAULTS = GenerateConfig()

# -- single options, used as they are ----------------------------------------------------------

DataOpt = typer.Option(..., "--data", "-d", help="LlamaIndex JSON, BEIR folder or JSONL pairs.")
SplitOpt = typer.Option(
    None,
    "--split",
    help="Qrels split of a BEIR --data folder: reads qrels/NAME.tsv [default: test, or the only "
    "one].",
    show_default=False,
)
AdapterOpt = typer.Option(..., "--adapter", "-a", help="Adapter folder.")
StoreOpt = typer.Option(
    None, "--store", help="Embedding store file [default: .queryfit/embeddings.sqlite]."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout, nothing else.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")
ReportOpt = typer.Option(
    None, "--report", help="Also write the HTML report (plots, query table) to this file."
)
ForceOpt = typer.Option(
    False,
    "--force",
    help="Use the adapter even with another base model (with --index: even when the model "
    "check fails).",
)
ResamplesOpt = typer.Option(10_000, "--resamples", help="Bootstrap resamples for the intervals.")


# -- groups ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One command-line flag: the parameter it fills, its type, its ``typer.Option``."""

    name: str
    type: Any
    option: Any


@dataclass(frozen=True)
class FlagGroup:
    """Flags that together describe one settings object; ``build(**values)`` makes it."""

    param: str
    flags: tuple[Flag, ...]
    build: Callable[..., Any]
    first: bool = False  # list these flags before the verb's own (inputs read first in --help)


def flags(*groups: FlagGroup) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add each group's flags to a verb and pass the verb ``group.param=group.build(...)``.

    A flag that several groups name (``--seed``) is declared once and feeds each of them.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn, eval_str=True)
        replaced = {group.param for group in groups}
        kept = [  # Typer passes every value by keyword
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in signature.parameters.values()
            if p.name not in replaced
        ]
        ordered = [g for g in groups if g.first] + [g for g in groups if not g.first]
        added = {
            f.name: inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.option, annotation=f.type
            )
            for group in ordered
            for f in group.flags
        }

        @wraps(fn)
        def verb(**values: Any) -> Any:
            built = {g.param: g.build(**{f.name: values[f.name] for f in g.flags}) for g in groups}
            own = {k: v for k, v in values.items() if k not in added}
            return fn(**own, **built)

        leading = [added[f.name] for g in groups if g.first for f in g.flags]
        parameters = leading + kept + [p for p in added.values() if p not in leading]
        verb.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        verb.__annotations__ = {p.name: p.annotation for p in parameters}
        del verb.__wrapped__  # Typer must read the new signature, not the function's own
        return verb

    return decorate


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is now {new}; {old} stops working in the next release", FutureWarning, stacklevel=2
    )


# -- the embedding model -----------------------------------------------------------------------


@dataclass
class ModelChoice:
    """The embedding model as the flags name it: a spec, plus an API model's endpoint options."""

    model: str | None = None
    base_url: str | None = None
    dimensions: int | None = None
    api_key: str | None = field(default=None, repr=False)
    device: str = "auto"  # where a local sentence-transformers model runs

    @property
    def options(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("base_url", self.base_url),
                ("dimensions", self.dimensions),
                ("api_key", self.api_key),
            )
            if v is not None
        }

    @property
    def worker_options(self) -> dict[str, Any]:
        """What travels with the spec to Ray workers: the endpoint options, and the device asked
        of a local model (``auto`` lets each worker pick its own)."""
        local = provider_of(self.model) in ("", "sentence-transformers")
        device = {"device": self.device} if local and self.device != "auto" else {}
        return self.options | device

    @property
    def is_api_model(self) -> bool:
        return is_api_model(self.model)

    def resolve(self, adapter: str | Path | None = None) -> Any:
        """The model spec unchanged when no endpoint option or device is set (the API's defaults
        apply), else the embedder built with them. With ``adapter`` and no ``--model``, the
        adapter's own base model (prefixes, recorded endpoint) is the one these options apply
        to. ``--device`` places a local sentence-transformers model; API models ignore it."""
        options = self.options
        if not options and self.device == "auto":
            return self.model
        from queryfit.adapters import as_adapter
        from queryfit.adapters.model import base_embedder
        from queryfit.embedders import get_embedder

        loaded = as_adapter(adapter, force=True) if self.model is None and adapter else None
        model = loaded.base_model.id if loaded is not None else self.model
        if not options:
            if provider_of(model) not in ("", "sentence-transformers"):
                return self.model  # a device means nothing to an API model
            options = {"device": self.device}
        elif not is_api_model(model):
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in options)
            raise EmbedderError(
                f"{flags} apply to API models (openai:, azure-openai:, cohere:, voyage:, "
                f"litellm:), not {model or 'the default local model'}; e.g. --model "
                "openai:text-embedding-3-small --base-url http://localhost:11434/v1"
            )
        if loaded is not None:
            return base_embedder(loaded, None, **options)
        return get_embedder(model, **options)


ModelOpt = typer.Option(
    None,
    "--model",
    "-m",
    help="Embedding model: sentence-transformers:NAME-OR-FOLDER, openai:MODEL, "
    "cohere:MODEL, voyage:MODEL... [default: the bundled all-MiniLM-L6-v2, or the "
    "adapter's base model].",
    show_default=False,
)
BaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="Endpoint of an API embedding model (OpenAI-compatible: Ollama, vLLM, TEI, LM "
    "Studio, Azure), e.g. http://localhost:11434/v1.",
    show_default=False,
)
DimensionsOpt = typer.Option(
    None,
    "--dimensions",
    help="Ask an API model for shorter vectors (e.g. 256); own store key.",
    show_default=False,
)
DeviceOpt = typer.Option(
    DEFAULTS.device,
    "--device",
    help="auto (CUDA when torch sees a GPU), cpu or cuda: where the local sentence-transformers "
    "model runs, and training (train).",
)
ApiKeyOpt = typer.Option(
    None,
    "--api-key",
    help="Key of an API embedding model [default: $OPENAI_API_KEY, $COHERE_API_KEY, "
    "$VOYAGE_API_KEY...]; never stored or shown.",
    show_default=False,
)
MODEL_FLAGS = (
    Flag("model", str, ModelOpt),
    Flag("base_url", str, BaseUrlOpt),
    Flag("dimensions", int, DimensionsOpt),
    Flag("api_key", str, ApiKeyOpt),
    Flag("device", str, DeviceOpt),
)
MODEL = FlagGroup("model", MODEL_FLAGS, ModelChoice)


# -- training ----------------------------------------------------------------------------------


@dataclass
class TrainChoice:
    """The training flags: a :class:`TrainConfig` and how dev is held out."""

    config: TrainConfig
    dev_fraction: float = 0.2
    split_by: str = "coverage"
    search: bool = False


def _train_choice(
    adapter_type: str,
    adapter_family: str | None,
    dev_fraction: float,
    split_by: str,
    search: bool,
    **settings: Any,
) -> TrainChoice:
    if adapter_family is not None:
        _deprecated("--adapter (the adapter family)", "--adapter-type")
        adapter_type = adapter_family
    return TrainChoice(
        TrainConfig(adapter_type=adapter_type, **settings), dev_fraction, split_by, search
    )


TRAIN = FlagGroup(
    "training",
    (
        Flag(
            "adapter_type",
            str,
            typer.Option(
                DEFAULTS.adapter_type,
                "--adapter-type",
                help="Adapter family: linear, low_rank, residual_mlp or procrustes.",
            ),
        ),
        Flag("adapter_family", str, typer.Option(None, "--adapter", hidden=True)),
        Flag(
            "loss",
            str,
            typer.Option(
                DEFAULTS.loss,
                help="auto (corpus while affordable, else sampled), corpus (every passage a "
                "negative), sampled (shared random + mined hard negatives, logQ-corrected) or "
                "in_batch.",
            ),
        ),
        Flag(
            "epochs",
            int,
            typer.Option(
                None, help="Fixed epoch count [default: chosen on dev].", show_default=False
            ),
        ),
        Flag(
            "max_epochs",
            int,
            typer.Option(DEFAULTS.max_epochs, help="Upper bound when dev chooses epochs."),
        ),
        Flag("lr", float, typer.Option(DEFAULTS.lr, help="Learning rate.")),
        Flag(
            "scale",
            float,
            typer.Option(DEFAULTS.scale, help="Inverse temperature on cosine similarities."),
        ),
        Flag(
            "identity_penalty",
            float,
            typer.Option(DEFAULTS.identity_penalty, help="Pull toward the base model."),
        ),
        Flag(
            "label_smoothing",
            float,
            typer.Option(DEFAULTS.label_smoothing, help="Of the corpus softmax."),
        ),
        Flag("batch_size", int, typer.Option(DEFAULTS.batch_size, help="Queries per step.")),
        Flag(
            "cv_folds",
            int,
            typer.Option(
                DEFAULTS.cv_folds,
                help=f"Cross-validate epochs and the gate over k folds (up to "
                f"{DEFAULTS.cv_max_queries} queries, with --split-by coverage); 0 = one dev split.",
            ),
        ),
        Flag(
            "dev_fraction",
            float,
            typer.Option(0.2, help="Share of queries held out to choose and gate."),
        ),
        Flag(
            "split_by",
            str,
            typer.Option(
                "coverage",
                help="Dev split: coverage (new questions over covered passages, else held-out "
                "questions), query (same corpus) or passage.",
            ),
        ),
        Flag(
            "search",
            bool,
            typer.Option(False, "--search", help="Try a small grid of settings on the dev split."),
        ),
        Flag(
            "seed", int, typer.Option(DEFAULTS.seed, help="Random seed (runs are deterministic).")
        ),
        Flag("device", str, DeviceOpt),
    ),
    _train_choice,
)


# -- generation --------------------------------------------------------------------------------


def _generation(
    llm: str | None,
    llm_base_url: str | None,
    llm_api_key: str | None,
    max_copied_words: int,
    consistency_k: int | None,
    **settings: Any,
) -> GenerateConfig:
    filters = FilterConfig(max_copied_words=max_copied_words, consistency_k=consistency_k)
    return GenerateConfig(
        llm=llm, llm_base_url=llm_base_url, llm_api_key=llm_api_key, filters=filters, **settings
    )


GENERATE = FlagGroup(
    "generation",
    (
        Flag(
            "llm",
            str,
            typer.Option(
                None,
                "--llm",
                help="Question writer: openai:MODEL (any OpenAI-compatible endpoint, see "
                "--llm-base-url), ollama:MODEL, smollm2 (offline, small) or heuristic (no "
                "model) [default: smollm2 if installed, else heuristic].",
                show_default=False,
            ),
        ),
        Flag(
            "llm_base_url",
            str,
            typer.Option(
                None,
                "--llm-base-url",
                help="OpenAI-compatible chat endpoint of the LLM [default: "
                "$QUERYFIT_LLM_BASE_URL, $OPENAI_BASE_URL or OpenAI], e.g. "
                "http://localhost:11434/v1 for Ollama.",
                show_default=False,
            ),
        ),
        Flag(
            "llm_api_key",
            str,
            typer.Option(
                None,
                "--llm-api-key",
                help="LLM API key [default: $QUERYFIT_LLM_API_KEY or $OPENAI_API_KEY]; never "
                "logged or saved.",
                show_default=False,
            ),
        ),
        Flag(
            "prompt",
            Path,
            typer.Option(
                None,
                "--prompt",
                help="Prompt template file with {passage} and {n} (--- splits off a system).",
                show_default=False,
            ),
        ),
        Flag(
            "questions_per_passage",
            int,
            typer.Option(
                GEN_DEFAULTS.questions_per_passage,
                "--questions-per-passage",
                "-n",
                help="Questions asked per passage.",
            ),
        ),
        Flag(
            "concurrency",
            int,
            typer.Option(GEN_DEFAULTS.concurrency, help="LLM requests in flight at once."),
        ),
        Flag(
            "timeout",
            float,
            typer.Option(GEN_DEFAULTS.timeout, help="Seconds one LLM request may take."),
        ),
        Flag(
            "max_retries",
            int,
            typer.Option(
                GEN_DEFAULTS.max_retries,
                help="Retries of a failed LLM request (429, 5xx, timeout, junk).",
            ),
        ),
        Flag(
            "temperature",
            float,
            typer.Option(None, help="LLM sampling temperature [default: 0.7].", show_default=False),
        ),
        Flag(
            "chunk_tokens",
            int,
            typer.Option(
                None,
                help="Passage size in the embedder's tokens [default: its max sequence length].",
                show_default=False,
            ),
        ),
        Flag(
            "overlap_tokens",
            int,
            typer.Option(
                None,
                help="Tokens shared by consecutive passages [default: size/8].",
                show_default=False,
            ),
        ),
        Flag(
            "max_copied_words",
            int,
            typer.Option(
                FilterConfig().max_copied_words,
                help="Drop questions copying this many consecutive words of the passage.",
            ),
        ),
        Flag(
            "consistency_k",
            int,
            typer.Option(
                None,
                "--consistency-k",
                help="Keep a question only if the base model ranks its passage in the top K "
                "[default: off].",
                show_default=False,
            ),
        ),
        Flag("seed", int, typer.Option(0, help="Random seed (runs are deterministic).")),
    ),
    _generation,
)
BackendOpt = typer.Option(
    "local",
    "--backend",
    help="Where the model calls run: local (this process) or ray (a Ray actor pool; "
    "pip install 'queryfit[ray]'). The store and journal stay here either way.",
)
RayAddressOpt = typer.Option(
    None,
    "--ray-address",
    help="Ray cluster to join with --backend ray: auto, or ray://HEAD:10001 [default: "
    "$RAY_ADDRESS, else a local Ray instance for this run].",
    show_default=False,
)
RayWorkersOpt = typer.Option(
    None,
    "--ray-workers",
    help="Ray actors, each loading the model once [default: one per CPU of the cluster].",
    show_default=False,
)


def _backend(backend: str, ray_address: str | None, ray_workers: int | None) -> Any:
    from queryfit.distributed import resolve_backend

    return resolve_backend(backend, address=ray_address, workers=ray_workers)


BACKEND = FlagGroup(
    "backend",
    (
        Flag("backend", str, BackendOpt),
        Flag("ray_address", str, RayAddressOpt),
        Flag("ray_workers", int, RayWorkersOpt),
    ),
    _backend,
)


DocsOpt = typer.Option(
    None,
    "--docs",
    "-D",
    help="Folder (searched recursively) or file: .txt, .md, .html, .pdf (or --index).",
)
IndexOpt = typer.Option(
    None,
    "--index",
    help="Your vector store or chunk file: lancedb:PATH?table=NAME, chroma:PATH?collection=NAME, "
    "qdrant:PATH?collection=NAME, faiss:INDEX?docs=FILE.jsonl, parquet:FILE or jsonl:FILE "
    "(&text_field=, &vector_field=, &id_field= where names differ). Passage vectors are read "
    "from it, never embedded.",
    show_default=False,
)
SampleOpt = typer.Option(
    None, "--sample", help="With --index: questions for this many passages drawn at random."
)
CheckForceOpt = typer.Option(
    False,
    "--force",
    help="With --index: go on when the model does not reproduce the index's vectors.",
)


# -- what evaluate and report read ----------------------------------------------------------


@dataclass
class EvaluationChoice:
    """The test data, the adapter and the statistics settings of ``evaluate`` and ``report``."""

    data: Path
    split: str | None
    adapter: Path
    index: str | None
    force: bool
    resamples: int

    def evaluate(self, model: ModelChoice, **options: Any) -> Any:
        """:func:`queryfit.api.evaluate` with these settings (``options``: store, report...)."""
        from queryfit import api

        return api.evaluate(
            self.data,
            self.adapter,
            model=model.resolve(self.adapter),
            split=self.split,
            index=self.index,
            force=self.force,
            n_resamples=self.resamples,
            **options,
        )


EVALUATION = FlagGroup(
    "evaluation",
    (
        Flag("data", Path, DataOpt),
        Flag("split", str, SplitOpt),
        Flag("adapter", Path, AdapterOpt),
        Flag("index", str, IndexOpt),
        Flag("force", bool, ForceOpt),
        Flag("resamples", int, ResamplesOpt),
    ),
    EvaluationChoice,
    first=True,
)


def llm_flags_compat(model: ModelChoice, generation: GenerateConfig) -> None:
    """``generate``/``run`` took the LLM's endpoint and key as ``--base-url``/``--api-key``.

    Those now name the embedder's, as in every other verb; when ``--model`` is not an API model
    they cannot mean that, so they still reach the LLM, with a deprecation line.
    """
    if model.is_api_model:
        return
    for old, new, attr in (
        ("base_url", "--llm-base-url", "llm_base_url"),
        ("api_key", "--llm-api-key", "llm_api_key"),
    ):
        value = getattr(model, old)
        if value is not None and getattr(generation, attr) is None:
            _deprecated(f"--{old.replace('_', '-')} for the LLM", new)
            setattr(generation, attr, value)
            setattr(model, old, None)
