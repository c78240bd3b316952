"""Every setting of question generation in one object, carried from the CLI to the pipeline.

Like :class:`~queryfit.training.config.TrainConfig` for training: ``queryfit generate``,
``queryfit run``, :func:`queryfit.generate` and :func:`queryfit.run` all take a
:class:`GenerateConfig`, so a setting is declared once and no verb can lack one the others have.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from queryfit.errors import GenerationError
from queryfit.generation.filters import FilterConfig

#: Earlier spellings of settings, accepted for one release with a DeprecationWarning.
RENAMED = {"base_url": "llm_base_url", "api_key": "llm_api_key"}


@dataclass
class GenerateConfig:
    """Settings of :func:`queryfit.generate`: the question writer, chunking, filters.

    ``llm``: ``openai:<model>`` (any OpenAI-compatible endpoint at ``llm_base_url``),
    ``ollama:<model>``, ``smollm2``, ``heuristic``, or ``None`` for the offline default.
    ``llm_api_key`` defaults to ``$QUERYFIT_LLM_API_KEY`` / ``$OPENAI_API_KEY``; it is never
    shown, saved or part of :meth:`to_dict`.
    """

    llm: str | None = None
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    prompt: str | Path | None = None  # template file with {passage} and {n}
    questions_per_passage: int = 2
    concurrency: int = 8  # LLM requests in flight
    timeout: float = 60.0  # seconds per LLM request
    max_retries: int = 5
    temperature: float | None = None  # None: the writer's default (0.7)
    chunk_tokens: int | None = None  # None: the embedder's max sequence length
    overlap_tokens: int | None = None  # None: chunk size / 8
    filters: FilterConfig = field(default_factory=FilterConfig)
    seed: int = 0

    @classmethod
    def of(cls, config: GenerateConfig | None = None, **settings: Any) -> GenerateConfig:
        """``config`` (or the defaults) with ``settings`` changed; unknown names are an error."""
        for old, new in RENAMED.items():
            if old in settings:
                warnings.warn(
                    f"{old}= is now {new}= (the LLM's; {old} names the embedder's setting "
                    "elsewhere); the old name goes in the next release",
                    DeprecationWarning,
                    stacklevel=3,
                )
                settings[new] = settings.pop(old)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise GenerationError(
                f"unknown generation setting(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return replace(config or cls(), **settings)

    def validate(self) -> None:
        """Reject impossible settings before any file is read or model loaded."""
        filters, temperature = self.filters, self.temperature
        checks = [
            (
                "questions-per-passage",
                self.questions_per_passage,
                self.questions_per_passage >= 1,
                "at least 1",
            ),
            ("concurrency", self.concurrency, self.concurrency >= 1, "at least 1"),
            ("timeout", self.timeout, math.isfinite(self.timeout) and self.timeout > 0, "positive"),
            ("max-retries", self.max_retries, self.max_retries >= 0, "0 or more"),
            (
                "temperature",
                temperature,
                temperature is None or (math.isfinite(temperature) and 0 <= temperature <= 2),
                "between 0 and 2",
            ),
            (
                "chunk-tokens",
                self.chunk_tokens,
                self.chunk_tokens is None or self.chunk_tokens >= 8,
                "at least 8",
            ),
            (
                "overlap-tokens",
                self.overlap_tokens,
                self.overlap_tokens is None or self.overlap_tokens >= 0,
                "0 or more",
            ),
            (
                "consistency-k",
                filters.consistency_k,
                filters.consistency_k is None or filters.consistency_k >= 1,
                "at least 1",
            ),
            (
                "max-copied-words",
                filters.max_copied_words,
                filters.max_copied_words >= 1,
                "at least 1",
            ),
        ]
        for flag, value, ok, want in checks:
            if not ok:
                raise GenerationError(f"--{flag} must be {want}, not {value}")
        if (
            self.chunk_tokens is not None
            and self.overlap_tokens is not None
            and self.overlap_tokens >= self.chunk_tokens
        ):
            raise GenerationError(
                f"--overlap-tokens ({self.overlap_tokens}) must be below --chunk-tokens "
                f"({self.chunk_tokens})"
            )

    def generator_options(self) -> dict[str, Any]:
        """The keyword arguments of ``generators.get_generator`` these settings give."""
        return {
            "base_url": self.llm_base_url,
            "api_key": self.llm_api_key,
            "prompt": self.prompt,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "temperature": self.temperature,
        }

    def generator(self) -> Any:
        """The question writer these settings describe (see ``generators.get_generator``)."""
        from queryfit.generation.generators import get_generator

        return get_generator(self.llm, **self.generator_options())

    def to_dict(self) -> dict[str, Any]:
        """Every setting but the key, JSON-ready."""
        out = asdict(self)
        out.pop("llm_api_key")
        out["prompt"] = str(self.prompt) if self.prompt is not None else None
        return out
