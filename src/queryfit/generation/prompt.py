"""The question-writing prompt, and a parser that survives what LLMs actually answer.

A template is plain text with two placeholders, ``{passage}`` and ``{n}``, replaced literally (so
JSON examples or other braces in a template need no escaping). A template file may start with a
system message separated from the user message by a line holding only ``---``.

:func:`parse_questions` reads numbered lists, bullets, ``Q1:`` labels, JSON arrays or objects
(also inside code fences), one-line runs of questions, and skips preambles ("Here are two
questions:"), answers and closing remarks. It returns at most ``n`` questions, in order, without
repeats, and raises ``ValueError`` when the answer holds none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from queryfit.data.model import surrogate_problem
from queryfit.errors import GenerationError

DEFAULT_SYSTEM = (
    "You write realistic search questions for testing a document retrieval system. "
    "You answer with the questions only."
)

DEFAULT_TEMPLATE = """\
Context information is below.
---------------------
{passage}
---------------------
Using only the context above and no prior knowledge, write {n} diverse questions that a user \
could ask and that this context answers.

Rules:
- Each question must be answerable from the context alone.
- Vary the question type (what, how, why, when, which, ...) and cover different facts.
- Use your own words: do not copy long phrases from the context.
- Do not mention "the context", "the passage", "the text" or "the document".
- Write one question per line, with no numbering, no answers and no other text."""


@dataclass(frozen=True)
class Prompt:
    """A system message and a user-message template with ``{passage}`` and ``{n}``."""

    template: str = DEFAULT_TEMPLATE
    system: str | None = DEFAULT_SYSTEM

    def __post_init__(self) -> None:
        if "{passage}" not in self.template:
            raise GenerationError(
                "the prompt template has no {passage} placeholder; add {passage} where the "
                "passage text goes (and {n} for the number of questions)"
            )

    def messages(self, passage: str, n: int) -> list[dict[str, str]]:
        """The chat messages for one passage."""
        user = self.template.replace("{n}", str(n)).replace("{passage}", passage)
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": user}]

    def key(self) -> str:
        """What identifies the prompt in the generation journal."""
        return json.dumps([self.system, self.template], ensure_ascii=False)

    @classmethod
    def from_file(cls, path: str | Path) -> Prompt:
        """Read a template file; a line ``---`` separates an optional system message."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GenerationError(
                f"cannot read prompt template {path}: {exc}; pass a UTF-8 text file"
            ) from exc
        system: str | None = None
        parts = re.split(r"^---[ \t]*$", text, maxsplit=1, flags=re.M)
        if len(parts) == 2 and "{passage}" in parts[1] and "{passage}" not in parts[0]:
            system, text = parts[0].strip() or None, parts[1]
        try:
            return cls(template=text.strip(), system=system)
        except GenerationError as exc:
            raise GenerationError(f"prompt template {path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_MARKER = re.compile(
    r"""^\s*(?:
        (?:\*\*|__)?(?:question|q)\s*\d*\s*[:.)\-]\s*(?:\*\*|__)?   # "Question 1:", "Q2)", "**Q:**"
      | \(?\d{1,3}[.):\]]\s*                                       # "1." "2)" "(3)" "4:"
      | [-*•·‣▪●◦–—+]\s+                                           # bullets
      | \#{1,6}\s+                                                 # markdown headings
    )""",
    re.I | re.X,
)
_ANSWER = re.compile(r"^\s*(?:\*\*|__)?(?:answer|a|ans|response)\s*\d*\s*[:.)]", re.I)
_PREAMBLE = re.compile(
    r"^(?:here (?:are|is)|sure|certainly|of course|okay|ok\b|below are|the following|"
    r"i hope|let me know|these questions|note:|questions?:?$)",
    re.I,
)
_LEAD_IN = re.compile(r"^([^?:]{1,60}):\s+(?=[A-Z])")
_REQUEST = re.compile(
    r"^(?:what|how|why|when|where|which|who|whom|whose|is|are|was|were|do|does|did|can|could|"
    r"should|would|will|explain|describe|list|name|compare|define|give|tell|find|identify|"
    r"summari[sz]e|outline)\b",
    re.I,
)
_INLINE_SPLIT = re.compile(
    r"(?<=\?)\s+(?=(?:\(?\d{1,3}[.)]\s+|[-*•]\s+|Q\d*[:.]\s*)?[A-Z])"  # "...? 2. How ...?"
    r"|(?<=[.!:])\s+(?=\(?\d{1,3}[.)]\s+[A-Z])"  # "Sure! 1. What ...?"
)


def _clean(line: str) -> str:
    line = line.strip()
    for _ in range(3):  # "1. **Q1:** ..." has more than one marker
        stripped = _MARKER.sub("", line, count=1).strip()
        if stripped == line:
            break
        line = stripped
    line = line.strip().strip("*_`").strip()
    lead = _LEAD_IN.match(line)
    if lead and len(lead.group(1).split()) <= 6 and line.endswith("?"):
        line = line[lead.end() :]  # "Only one: What ...?" -> "What ...?"
    if len(line) >= 2 and line[0] in "\"'“‘" and line[-1] in "\"'”’":
        line = line[1:-1].strip()
    return " ".join(line.split())


def _from_json(text: str) -> list[str] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        start = min((i for i in (candidate.find("["), candidate.find("{")) if i >= 0), default=-1)
        if start < 0:
            continue
        for end in range(len(candidate), start, -1):
            if candidate[end - 1] not in "]}":
                continue
            try:
                data = json.loads(candidate[start:end])
            except ValueError:
                continue
            found = _strings_in(data)
            if found:
                return found
            break
    return None


def _strings_in(data: object) -> list[str]:
    if isinstance(data, dict):
        for key in ("questions", "queries", "question", "query", "items", "results"):
            if key in data:
                return _strings_in(data[key])
        values = [v for v in data.values() if isinstance(v, str | list | dict)]
        return [s for v in values for s in _strings_in(v)]
    if isinstance(data, list):
        return [s for item in data for s in _strings_in(item)]
    if isinstance(data, str) and data.strip():
        return [data.strip()]
    return []


def parse_questions(text: str, n: int | None = None, *, min_words: int = 2) -> list[str]:
    """Questions found in an LLM's answer, at most ``n``, in order, without repeats.

    Raises ``ValueError`` when none is found, so a caller can ask again.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty answer")
    found = _from_json(text)
    if found is None:
        body = "\n".join(m.group(1) for m in _FENCE.finditer(text)) or text
        lines: list[str] = []
        for raw in body.splitlines():
            if _ANSWER.match(raw):
                continue
            lines.extend(_INLINE_SPLIT.split(raw.strip()))
        found = []
        for raw in lines:
            line = _clean(raw)
            if not line or _ANSWER.match(line):
                continue
            if _PREAMBLE.match(line) or (line.endswith(":") and "?" not in line):
                continue
            found.append(line)
        questions = [q for q in found if q.endswith("?")]
        # Prefer the lines that are questions; an answer with none keeps the lines that read
        # like a request ("Explain how ..."), never free prose such as a refusal.
        found = questions or [q for q in found if _REQUEST.match(q)]
    out: list[str] = []
    seen: set[str] = set()
    for question in found:
        question = _clean(question)
        if len(question.split()) < min_words or surrogate_problem(question) is not None:
            continue  # a lone surrogate (JSON "\\ud800") would crash tokenizers and UTF-8 files
        key = re.sub(r"\W+", " ", question.lower()).strip()
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(question)
    if not out:
        raise ValueError(f"no question found in the answer {text[:80]!r}")
    return out[:n] if n else out
