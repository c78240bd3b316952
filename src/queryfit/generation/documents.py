"""From files to passages: read a folder of documents and chunk it for the embedder.

``load_documents`` walks a folder (or takes one file) and reads ``.txt``, ``.md``, ``.rst``,
``.html`` and ``.pdf`` files into :class:`Document` objects, one per file or, for PDFs, one per
page, keeping the source path and page number. A file that cannot be read is reported in
:attr:`LoadResult.skipped` and skipped, never fatal.

``chunk_documents`` cuts documents into :class:`Passage` objects that fit the embedder's token
window: a sentence-aware splitter packs whole sentences up to ``max_tokens`` tokens (counted with
the embedder's own tokenizer when it has one) and starts each next passage with the last
``overlap_tokens`` worth of sentences. A passage's id is derived from its text alone
(``d-`` + 16 hex digits of its sha256, the convention of :mod:`queryfit.data`), so a rerun
over the same files yields the same ids and lines up with the embedding store.

Example::

    from queryfit.generation.documents import load_documents, chunk_documents
    docs = load_documents("./my-docs")
    passages = chunk_documents(docs.documents, max_tokens=200)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from queryfit.data import content_id
from queryfit.errors import DatasetError

__all__ = [
    "Document",
    "LoadResult",
    "Passage",
    "TokenCounter",
    "chunk_documents",
    "chunk_text",
    "load_documents",
    "passage_id",
    "split_sentences",
    "token_counter_for",
]

TEXT_SUFFIXES = (".txt", ".text")
MARKDOWN_SUFFIXES = (".md", ".markdown", ".rst")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
PDF_SUFFIXES = (".pdf",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES

#: Window used when an embedder does not say how many tokens it reads.
DEFAULT_MAX_TOKENS = 256


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """The text of one file, or of one page of a PDF."""

    source: str  # path relative to the folder that was loaded (the file name for a single file)
    text: str
    page: int | None = None  # 1-based page number for PDFs


@dataclass(frozen=True)
class Passage:
    """A chunk of a document, small enough for the embedder, with where it came from."""

    id: str
    text: str
    source: str
    page: int | None = None
    chunk: int = 0  # position of the chunk within its document (page)
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadResult:
    """Documents read from a folder, and the files that were skipped with the reason."""

    root: Path
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    files_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "files_read": self.files_read,
            "documents": len(self.documents),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def passage_id(text: str) -> str:
    """Content-derived id: equal texts get equal ids, on any machine, in any run."""
    return content_id("d-", text)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _decode(raw: bytes) -> str:
    """UTF-8 (BOM tolerated), then UTF-16 with a BOM, then cp1252 as a last resort."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        if b"\x00" in raw[:4096]:
            raise ValueError("binary content, not text") from None
        return raw.decode("cp1252", errors="replace")


_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*\n", re.S)
_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_MD_RULE = re.compile(r"^\s*([-*_=~^])\1{2,}\s*$", re.M)
_MD_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def split_fences(text: str) -> list[tuple[bool, str]]:
    """``(is_code, text)`` segments: Markdown fenced code blocks (fence lines included, inner
    lines verbatim) and the prose between them.

    Follows CommonMark: a fence is three or more backticks or tildes indented at most three
    spaces; it closes at a line of at least as many of the same character, or at the end of the
    text. Technical documents keep their code this way instead of losing it as markup.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[tuple[bool, str]] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if opening is None or (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            prose.append(lines[i])
            i += 1
            continue
        indent, fence = len(opening.group(1)), opening.group(2)
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:].rstrip())
            i += 1
        i += 1  # the closing fence (or the end of the text)
        while body and not body[-1]:
            body.pop()
        while body and not body[0]:
            body.pop(0)
        if prose:
            segments.append((False, "\n".join(prose)))
            prose = []
        if body:  # an empty block says nothing
            info = opening.group(3).strip()
            segments.append((True, "\n".join([fence + info, *body, fence])))
    if prose:
        segments.append((False, "\n".join(prose)))
    return segments


def _markdown_to_text(text: str) -> str:
    """Markdown (or reST) to prose: markup removed, headings kept as their own paragraphs.

    Fenced code blocks are kept verbatim, fences included, as paragraphs of their own: the code
    in technical docs is what many questions are about.
    """
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"))
    return "\n\n".join(
        segment if is_code else _markdown_prose(segment) for is_code, segment in split_fences(text)
    )


def _markdown_prose(text: str) -> str:
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_HEADING.sub(lambda m: f"\n{m.group(1)}\n", text)
    text = _MD_RULE.sub("\n", text)
    text = _MD_EMPHASIS.sub(r"\2", text)
    text = _MD_HTML_TAG.sub("", text)
    text = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", text, flags=re.M)  # list markers
    text = re.sub(r"^\s*>\s?", "", text, flags=re.M)  # block quotes
    return text


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements as paragraph breaks."""

    SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer"}
    BLOCK = {
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header",
        "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "dd", "dt", "hr", "main",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self.SKIP:
            self.skip_depth += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if not self.skip_depth:
            self.parts.append(data)


def _html_to_text(text: str) -> str:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    body = "".join(parser.parts)
    if not body.strip() and parser.title.strip():
        return parser.title
    return body


def _read_pdf(path: Path) -> list[tuple[int, str]]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise ValueError(
            "reading PDF needs pypdf; install it with `pip install 'queryfit[docs]'`"
        ) from exc
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings on damaged files: we report
    reader = PdfReader(str(path))
    if reader.is_encrypted:
        try:
            if not reader.decrypt(""):
                raise ValueError("encrypted PDF (a password is needed)")
        except Exception as exc:  # noqa: BLE001 - pypdf raises several types here
            raise ValueError(f"encrypted PDF ({exc})") from exc
    pages = []
    for number, page in enumerate(reader.pages, start=1):
        pages.append((number, page.extract_text() or ""))
    return pages


def _normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep paragraph breaks (blank lines) as the one structure.

    Fenced code blocks keep their lines and indentation: whitespace is part of code.
    """
    out: list[str] = []
    for is_code, segment in split_fences(text):
        if is_code:
            out.append(segment.replace("\u00a0", " "))
            continue
        segment = segment.replace("\u00a0", " ")
        segment = re.sub(r"-\n(?=[a-z])", "", segment)  # words hyphenated across lines (PDFs)
        paragraphs = re.split(r"\n\s*\n", segment)
        out.extend(" ".join(p.split()) for p in paragraphs)
    return "\n\n".join(p for p in out if p)


def read_file(path: str | Path, source: str | None = None) -> list[Document]:
    """Read one file into documents (one per PDF page); raises ``ValueError`` if unreadable."""
    path = Path(path)
    source = source or path.name
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        try:
            pages = _read_pdf(path)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged PDF raises anything
            raise ValueError(f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
        docs = [Document(source, _normalise_whitespace(t), page=n) for n, t in pages]
        docs = [d for d in docs if d.text]
        if not docs:
            raise ValueError("no extractable text (a scanned PDF needs OCR first)")
        return docs
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from exc
    text = _decode(raw)
    if suffix in HTML_SUFFIXES:
        text = _html_to_text(text)
    elif suffix in MARKDOWN_SUFFIXES:
        text = _markdown_to_text(text)
    text = _normalise_whitespace(text)
    if not text:
        raise ValueError("no text")
    return [Document(source, text)]


def load_documents(
    path: str | Path,
    *,
    suffixes: Sequence[str] = SUPPORTED_SUFFIXES,
) -> LoadResult:
    """Read every supported file under ``path`` (recursively, in sorted order).

    Hidden files and folders (names starting with ``.``) are ignored. Files with other suffixes
    are skipped silently; supported files that cannot be read are listed in ``skipped``. Raises
    :class:`DatasetError` only when ``path`` does not exist or holds no readable document.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(
            f"no such file or folder: {root}; pass --docs with a folder of documents"
        )
    wanted = tuple(s.lower() for s in suffixes)
    result = LoadResult(root=root)
    if root.is_file():
        files = [(root, root.name)]
    else:
        files = []
        for file in sorted(root.rglob("*")):
            rel = file.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not file.is_file():
                continue
            if file.suffix.lower() in wanted:
                files.append((file, rel.as_posix()))
    for file, source in files:
        try:
            docs = read_file(file, source)
        except ValueError as exc:
            result.skipped.append((source, str(exc)))
            continue
        result.files_read += 1
        result.documents.extend(docs)
    if not result.documents:
        detail = (
            f"; skipped: {', '.join(f'{p} ({r})' for p, r in result.skipped[:5])}"
            if result.skipped
            else ""
        )
        raise DatasetError(
            f"no readable documents in {root} (looked for {', '.join(wanted)}){detail}; "
            "pass a folder holding text, Markdown, HTML or PDF files"
        )
    return result


# --------------------------------------------------------------------------------------------
# Token counting
# --------------------------------------------------------------------------------------------


@dataclass
class TokenCounter:
    """How to count tokens, and how many the embedder reads at most (special tokens excluded)."""

    count: Callable[[str], int]
    max_tokens: int
    name: str

    def __call__(self, text: str) -> int:
        return self.count(text)


_WORDPIECE_APPROX = re.compile(r"\w+|[^\w\s]")


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate: words and punctuation marks, long words counted as several."""
    return sum(1 + len(t) // 8 for t in _WORDPIECE_APPROX.findall(text))


def token_counter_for(embedder: Any = None, max_tokens: int | None = None) -> TokenCounter:
    """The embedder's own token count and window, without loading its weights when possible.

    Uses, in order: ``embedder.count_tokens`` / ``embedder.max_tokens`` if it has them; the
    tokenizer and ``max_seq_length`` of a local sentence-transformers folder; an estimate from
    words and punctuation with a 256-token window. ``max_tokens`` overrides the window.
    """
    counter: TokenCounter | None = None
    if embedder is not None and callable(getattr(embedder, "count_tokens", None)):
        window = int(getattr(embedder, "max_tokens", 0) or DEFAULT_MAX_TOKENS)
        counter = TokenCounter(embedder.count_tokens, window, getattr(embedder, "model_id", "?"))
    elif embedder is not None and getattr(embedder, "path", None) is not None:
        counter = _sentence_transformers_counter(Path(embedder.path), embedder)
    if counter is None:
        counter = TokenCounter(approximate_tokens, DEFAULT_MAX_TOKENS, "approximate")
    if max_tokens is not None:
        counter.max_tokens = int(max_tokens)
    return counter


def _sentence_transformers_counter(folder: Path, embedder: Any) -> TokenCounter | None:
    """Count with the folder's own tokenizer: ``tokenizers`` on tokenizer.json (fast to load),
    else transformers' AutoTokenizer."""
    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return None
    try:
        window = int(json.loads(config.read_text()).get("max_seq_length") or DEFAULT_MAX_TOKENS)
    except (OSError, ValueError):
        return None
    encode = _fast_tokenizer(folder) or _auto_tokenizer(folder)
    if encode is None:
        return None
    count_fn, special = encode
    prefix = getattr(embedder, "document_prefix", "") or ""
    prefix_tokens = count_fn(prefix) if prefix else 0
    name = getattr(embedder, "model_id", folder.name)
    return TokenCounter(count_fn, max(16, window - special - prefix_tokens), name)


def _fast_tokenizer(folder: Path) -> tuple[Callable[[str], int], int] | None:
    if not (folder / "tokenizer.json").is_file():
        return None
    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        processor = tokenizer.post_processor
        special = processor.num_special_tokens_to_add(False) if processor is not None else 0
    except Exception:  # noqa: BLE001 - any failure: try the slower loader
        return None

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count, int(special)


def _auto_tokenizer(folder: Path) -> tuple[Callable[[str], int], int] | None:
    try:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure: fall back to the estimate
        return None

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False, verbose=False))

    return count, int(tokenizer.num_special_tokens_to_add(pair=False))


# --------------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|al|approx|Mr|Mrs|Ms|Dr|Prof|St|No|Fig|Eq|Sec|Vol)|\b[A-Z])\.$"
)


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph: split after ., ! or ? followed by a capital letter or digit.

    Common abbreviations (e.g., i.e., Dr., initials) do not end a sentence.
    """
    flat = " ".join(text.split())
    if not flat:
        return []
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(flat):
        head = flat[start : match.start()]
        if _ABBREVIATION.search(head):
            continue
        piece = flat[start : match.end()].strip()
        if piece:
            out.append(piece)
        start = match.end()
    tail = flat[start:].strip()
    if tail:
        out.append(tail)
    return out


def _split_long(sentence: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Cut a sentence longer than the window at word boundaries."""
    words = sentence.split()
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        candidate = " ".join([*current, word])
        if current and count(candidate) > max_tokens:
            pieces.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _code_pieces(block: str, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """A fenced block whole when it fits the window, else runs of whole lines, each wrapped in
    the block's fences so that every passage still reads as code."""
    if count(block) <= max_tokens:
        return [block]
    lines = block.split("\n")
    opening, body, closing = lines[0], lines[1:-1], lines[-1]

    def wrap(run: list[str]) -> str:
        return "\n".join([opening, *run, closing])

    room = max_tokens - count(wrap([]))
    pieces: list[str] = []
    run: list[str] = []
    for line in body:
        parts = [line] if count(line) <= room else _split_long(line, max(room, 1), count)
        for part in parts:
            if run and count(wrap([*run, part])) > max_tokens:
                pieces.append(wrap(run))
                run = []
            run.append(part)
    if run:
        pieces.append(wrap(run))
    return pieces


def default_overlap(max_tokens: int) -> int:
    """Tokens carried over between chunks when no overlap is given: an eighth of the window."""
    return max_tokens // 8


def chunk_text(
    text: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int | None = None,
    count_tokens: Callable[[str], int] = approximate_tokens,
    min_tokens: int = 8,
) -> list[str]:
    """Split text into chunks of at most ``max_tokens`` tokens, on sentence boundaries.

    Paragraphs are kept whole when they fit; otherwise sentences are packed greedily. A fenced
    code block is one paragraph, kept whole (lines and indentation intact) when it fits, else cut
    between lines into pieces that each carry the fences. Each chunk
    after the first starts with the trailing sentences of the previous one, up to
    ``overlap_tokens`` (default: an eighth of ``max_tokens``), so a fact cut at a boundary is
    still whole in one chunk. A sentence longer than the window is cut at word boundaries. A final
    chunk shorter than ``min_tokens`` is merged into its predecessor when it fits.
    """
    if max_tokens < 8:
        raise DatasetError(f"chunk size {max_tokens} tokens is too small; use at least 8")
    overlap = default_overlap(max_tokens) if overlap_tokens is None else overlap_tokens
    if not 0 <= overlap < max_tokens:
        raise DatasetError(
            f"overlap of {overlap} tokens must be at least 0 and below the chunk size "
            f"({max_tokens}); lower --overlap-tokens"
        )
    units: list[tuple[str, int, bool]] = []  # (sentence, tokens, starts a paragraph)
    for is_code, segment in split_fences(text):
        if is_code:  # a code block is a paragraph of its own, whole when it fits
            units.extend(
                (piece, count_tokens(piece), True)
                for piece in _code_pieces(segment, max_tokens, count_tokens)
            )
            continue
        for paragraph in re.split(r"\n\s*\n", segment):
            first = True
            for sentence in split_sentences(paragraph):
                n = count_tokens(sentence)
                pieces = (
                    [sentence]
                    if n <= max_tokens
                    else _split_long(sentence, max_tokens, count_tokens)
                )
                for piece in pieces:
                    units.append((piece, n if len(pieces) == 1 else count_tokens(piece), first))
                    first = False
    chunks: list[list[tuple[str, int, bool]]] = []
    current: list[tuple[str, int, bool]] = []
    size = 0
    for unit in units:
        # +1 for the joining space, which tokenizers may or may not count: stay on the safe side.
        if current and size + unit[1] + 1 > max_tokens:
            chunks.append(current)
            carried: list[tuple[str, int, bool]] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev[1] + 1 > overlap or len(carried) + 1 >= len(current):
                    break
                carried.insert(0, prev)
                carried_size += prev[1] + 1
            if carried_size + unit[1] + 1 > max_tokens:
                carried, carried_size = [], 0
            current, size = carried, carried_size
        current.append(unit)
        size += unit[1] + 1
    if current:
        chunks.append(current)
    texts = [_join(chunk) for chunk in chunks]
    if len(texts) > 1 and count_tokens(texts[-1]) < min_tokens:
        merged = _join(chunks[-2] + [u for u in chunks[-1] if u not in chunks[-2]])
        if count_tokens(merged) <= max_tokens:
            texts[-2:] = [merged]
    return texts


def _join(units: Sequence[tuple[str, int, bool]]) -> str:
    out = ""
    for i, (sentence, _, starts_paragraph) in enumerate(units):
        if i == 0:
            out = sentence
        else:
            out += ("\n\n" if starts_paragraph else " ") + sentence
    return out


def chunk_documents(
    documents: Iterable[Document],
    *,
    max_tokens: int | None = None,
    overlap_tokens: int | None = None,
    counter: TokenCounter | None = None,
    min_tokens: int = 8,
) -> list[Passage]:
    """Chunk documents into passages with content-derived ids, in document order.

    ``counter`` counts tokens (default: the estimate from :func:`approximate_tokens`);
    ``max_tokens`` defaults to its window. A chunk whose text already appeared (the same
    paragraph in two files, say) is kept once, under the first source it came from.
    """
    counter = counter or TokenCounter(approximate_tokens, DEFAULT_MAX_TOKENS, "approximate")
    window = max_tokens if max_tokens is not None else counter.max_tokens
    seen: set[str] = set()
    passages: list[Passage] = []
    for doc in documents:
        chunks = chunk_text(
            doc.text,
            max_tokens=window,
            overlap_tokens=overlap_tokens,
            count_tokens=counter.count,
            min_tokens=min_tokens,
        )
        for i, text in enumerate(chunks):
            pid = passage_id(text)
            if pid in seen:
                continue
            seen.add(pid)
            passages.append(Passage(pid, text, doc.source, doc.page, i, counter.count(text)))
    return passages
