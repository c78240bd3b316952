"""From passages to (question, passage) pairs.

* :func:`generate` / :func:`generate_pairs`: documents or passages in, a filtered
  :class:`~queryfit.data.QADataset` out, resumable through a journal.
* :func:`get_generator`: ``openai:<model>`` (any OpenAI-compatible endpoint), ``ollama:<model>``,
  ``smollm2`` (offline, small) or ``heuristic`` (no model).
* :class:`ChatClient`: the OpenAI-compatible chat client (timeouts, retries, ``Retry-After``).
* :class:`Prompt`, :func:`parse_questions`, :class:`FilterConfig`: the prompt, the answer parser
  and the quality filters.
"""

from queryfit.generation.config import GenerateConfig
from queryfit.generation.filters import FilterConfig, FilterResult
from queryfit.generation.generators import (
    ChatGenerator,
    HeuristicGenerator,
    QuestionGenerator,
    SmolLM2Generator,
    get_generator,
    smollm2_available,
)
from queryfit.generation.journal import Journal
from queryfit.generation.llm import ChatClient, RequestFailed
from queryfit.generation.pipeline import GenerateResult, GenerationStats, generate, generate_pairs
from queryfit.generation.prompt import DEFAULT_TEMPLATE, Prompt, parse_questions

__all__ = [
    "DEFAULT_TEMPLATE",
    "ChatClient",
    "ChatGenerator",
    "FilterConfig",
    "GenerateConfig",
    "FilterResult",
    "GenerateResult",
    "GenerationStats",
    "HeuristicGenerator",
    "Journal",
    "Prompt",
    "QuestionGenerator",
    "RequestFailed",
    "SmolLM2Generator",
    "generate",
    "generate_pairs",
    "get_generator",
    "parse_questions",
    "smollm2_available",
]
