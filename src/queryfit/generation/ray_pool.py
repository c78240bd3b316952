"""Question generation on Ray Data: passages not yet in the journal go to a pool of actors.

The driver keeps the journal. It sends the passages still to do to ``map_batches`` over an actor
pool; each actor builds the question generator once from its spec and options (the prompt, the
resolved endpoint, timeouts; never an API key: actors read ``$QUERYFIT_LLM_API_KEY`` /
``$OPENAI_API_KEY`` from their own environment), checks that its setting is the driver's (the
setting names the journal), and writes the questions of one batch per call, ``concurrency`` at a
time. The driver records each passage in the journal as its batch arrives, so a rerun resumes and
the dataset (assembled in passage order from the journal) is the local backend's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from queryfit.distributed.backend import (
    RayBackend,
    pool_batches,
    pool_size,
    ray_session,
    refuse_secrets,
)
from queryfit.errors import BackendError, GenerationError, QueryfitError
from queryfit.generation.documents import Passage
from queryfit.generation.llm import ChatStats, RequestFailed

#: Chat counters summed from the workers into the driver's report.
STAT_FIELDS = tuple(ChatStats().to_dict())


def _chat_stats(generator: Any) -> ChatStats | None:
    return getattr(getattr(generator, "client", None), "stats", None)


class GenerateWorker:
    """One actor of the pool: builds the generator once, then answers a batch of passages.

    Each passage comes back with its questions (JSON) or the reason it failed after retries;
    an error a user can cause (the generator cannot be built here, its setting differs from the
    driver's) comes back in the ``error`` column, for the driver to raise as one line.
    """

    def __init__(
        self, spec: str | None, options: dict[str, Any], setting: dict[str, Any], n: int, seed: int
    ) -> None:
        from queryfit.generation.generators import get_generator

        self.n, self.seed, self.error = n, seed, ""
        try:
            self.generator = get_generator(spec, **options)
            own = self.generator.setting()
            if own != setting:
                differ = sorted(k for k in set(own) | set(setting) if own.get(k) != setting.get(k))
                self.error = (
                    f"the question generator built on this worker differs from the driver's in "
                    f"{', '.join(differ)}; give the workers the same environment and queryfit "
                    "version"
                )
        except QueryfitError as exc:
            self.error = str(exc)

    def _one(self, text: str) -> tuple[str, str, str]:
        try:
            questions = self.generator.generate(text, self.n, seed=self.seed)
        except RequestFailed as exc:
            return "", exc.reason, exc.detail
        return json.dumps(list(questions), ensure_ascii=False), "", ""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = batch["row"]
        texts = [str(t) for t in batch["text"]]
        size = len(texts)
        results = [("", "", "")] * size
        error = self.error
        stats = _chat_stats(self.generator) if not error else None
        before = stats.to_dict() if stats is not None else None
        if not error:
            try:
                workers = max(1, min(int(self.generator.concurrency), size))
                with ThreadPoolExecutor(workers, thread_name_prefix="queryfit-ray") as pool:
                    results = list(pool.map(self._one, texts))
            except QueryfitError as exc:
                error = str(exc)
        out: dict[str, np.ndarray] = {
            "row": rows,
            "questions": np.array([r[0] for r in results], dtype=object),
            "reason": np.array([r[1] for r in results], dtype=object),
            "detail": np.array([r[2] for r in results], dtype=object),
            "error": np.array([error] * size, dtype=object),
        }
        after = stats.to_dict() if stats is not None else None
        for name in STAT_FIELDS:  # the batch's chat counters, on its first row
            column = np.zeros(size, dtype=np.float64)
            if before is not None and after is not None and size:
                column[0] = after[name] - before[name]
            out[f"stat_{name}"] = column
        return out


class RayGenerationRunner:
    """``runner(passages, n, seed)`` for the generation pipeline: yields ``(passage, questions
    or RequestFailed)`` as batches finish, in any order. ``stats`` sums the workers' chat
    counters (requests, retries, 429s, waits); None for a generator that calls no LLM server,
    as locally."""

    def __init__(
        self,
        backend: RayBackend,
        spec: str | None,
        options: dict[str, Any],
        setting: dict[str, Any],
        batch_size: int,
        chat: bool,
    ) -> None:
        self.backend, self.spec, self.options, self.setting = backend, spec, options, setting
        self.batch_size = max(1, batch_size)
        self.stats = ChatStats() if chat else None

    def __call__(
        self, passages: Sequence[Passage], n: int, seed: int
    ) -> Iterator[tuple[Passage, list[str] | RequestFailed]]:
        if not passages:
            return
        with ray_session(self.backend) as ray:
            size = self.batch_size
            blocks = math.ceil(len(passages) / size)
            items = [{"row": i, "text": p.text} for i, p in enumerate(passages)]
            kwargs = {
                "spec": self.spec,
                "options": self.options,
                "setting": self.setting,
                "n": n,
                "seed": seed,
            }
            for batch in pool_batches(
                ray,
                self.backend,
                items,
                GenerateWorker,
                kwargs,
                batch_size=size,
                blocks=blocks,
                workers=pool_size(ray, self.backend, blocks),
                what="question generation",
            ):
                yield from self._results(passages, batch)

    def _results(
        self, passages: Sequence[Passage], batch: dict[str, np.ndarray]
    ) -> Iterator[tuple[Passage, list[str] | RequestFailed]]:
        errors = [e for e in batch["error"].tolist() if e]
        if errors:
            raise GenerationError(f"on a Ray worker: {errors[0]}")
        for name in STAT_FIELDS if self.stats is not None else ():
            total = float(batch[f"stat_{name}"].sum())
            current = getattr(self.stats, name)
            setattr(self.stats, name, type(current)(current + total))
        for row, questions, reason, detail in zip(
            batch["row"].tolist(),
            batch["questions"].tolist(),
            batch["reason"].tolist(),
            batch["detail"].tolist(),
            strict=True,
        ):
            outcome = RequestFailed(reason, detail) if reason else json.loads(questions)
            yield passages[row], outcome


def ray_generation_runner(
    backend: RayBackend,
    spec: Any,
    generator: Any,
    options: Mapping[str, Any],
) -> RayGenerationRunner:
    """A runner that rebuilds ``generator`` (made on the driver from ``spec`` and ``options``,
    :func:`get_generator`'s) on each worker.

    The driver's resolved endpoint and prompt are sent, so a worker neither needs the prompt
    file nor guesses the endpoint from its own environment; the API key is not.
    """
    if spec is not None and not isinstance(spec, str):
        raise BackendError(
            f"--backend ray needs a generator spec string each worker can build (e.g. "
            f"'openai:MODEL', 'smollm2', 'heuristic'), not a {type(spec).__name__} object"
        )
    options = dict(options)
    refuse_secrets(options, "--api-key (api_key=)")
    client = getattr(generator, "client", None)
    if client is not None:
        options["base_url"] = client.base_url
    if hasattr(generator, "prompt"):
        options["prompt"] = generator.prompt
    if spec is None or not spec.strip():
        # The default depends on what is installed; the worker must build what the driver chose.
        spec = "smollm2" if type(generator).__name__ == "SmolLM2Generator" else "heuristic"
    return RayGenerationRunner(
        backend,
        spec,
        options,
        generator.setting(),
        int(getattr(generator, "concurrency", 1)),
        chat=client is not None,
    )
