"""``--index URI`` to a source: ``scheme:PATH?option=value&...``.

One place knows every scheme, what it requires and which options it takes, so a typo in any of
them gets the same kind of line: what was wrong and the forms that work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from queryfit.errors import SourceError
from queryfit.sources.base import Fields, PassageSource

FORMS = (
    "lancedb:PATH?table=NAME",
    "chroma:PATH?collection=NAME",
    "qdrant:PATH?collection=NAME",
    "faiss:INDEX?docs=FILE.jsonl",
    "parquet:FILE",
    "jsonl:FILE",
)
#: scheme -> the option it requires (besides the path)
REQUIRED = {"lancedb": "table", "chroma": "collection", "qdrant": "collection", "faiss": "docs"}
FIELD_OPTIONS = ("id_field", "text_field", "vector_field")
SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl"}


def _usage() -> str:
    return "use " + ", ".join(FORMS) + " (field names: &text_field=, &vector_field=, &id_field=)"


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """(scheme, path, options) of an index URI; a bare ``.parquet``/``.jsonl`` path is allowed."""
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.strip().lower()
    if not sep or scheme not in (*REQUIRED, "parquet", "jsonl"):
        suffix = Path(uri.partition("?")[0]).suffix.lower()
        if suffix in SUFFIXES:
            scheme, rest = SUFFIXES[suffix], uri
        else:
            raise SourceError(f"cannot read --index {uri!r}: {_usage()}")
    path, _, query = rest.partition("?")
    if not path.strip():
        raise SourceError(f"--index {uri!r} names no path: {_usage()}")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SourceError(
            f"--index {uri!r}: cannot read the options after '?'; {_usage()}"
        ) from None
    allowed = {*FIELD_OPTIONS, *([REQUIRED[scheme]] if scheme in REQUIRED else [])}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise SourceError(
            f"--index {uri!r}: unknown option {', '.join(unknown)} for {scheme}: "
            f"it takes {', '.join(sorted(allowed))}"
        )
    need = REQUIRED.get(scheme)
    if need and not options.get(need, "").strip():
        form = next(f for f in FORMS if f.startswith(scheme + ":"))
        raise SourceError(f"--index {uri!r} names no {need}: write {form}")
    return scheme, path.strip(), options


def open_source(
    index: Any,
    *,
    text_field: str | None = None,
    vector_field: str | None = None,
    id_field: str | None = None,
) -> PassageSource:
    """A :class:`PassageSource` from a URI, a path to a chunk file, or Python objects.

    ``index`` may already be a source (returned as is). Field names given here win over the
    URI's ``&text_field=`` and friends.
    """
    if isinstance(index, PassageSource):
        return index
    if isinstance(index, str | Path):
        scheme, path, options = parse_uri(str(index))
        fields = Fields(
            id=id_field or options.get("id_field") or None,
            text=text_field or options.get("text_field") or None,
            vector=vector_field or options.get("vector_field") or None,
        )
        uri = str(index)
        if scheme == "lancedb":
            from queryfit.sources.lancedb_table import LanceDBSource

            return LanceDBSource(uri, path, options["table"], fields)
        if scheme == "chroma":
            from queryfit.sources.chroma_collection import ChromaSource

            return ChromaSource(uri, path, options["collection"], fields)
        if scheme == "qdrant":
            from queryfit.sources.qdrant_local import QdrantSource

            return QdrantSource(uri, path, options["collection"], fields)
        if scheme == "faiss":
            from queryfit.sources.faiss_file import FaissSource

            return FaissSource(uri, path, options["docs"], fields)
        from queryfit.sources.files import JsonlSource, ParquetSource

        return (ParquetSource if scheme == "parquet" else JsonlSource)(uri, path, fields)
    if isinstance(index, Sequence) and not isinstance(index, bytes):
        if text_field or vector_field or id_field:
            raise SourceError("text_field=, vector_field= and id_field= apply to stores and files")
        from queryfit.sources.memory import MemorySource

        return MemorySource(index)
    raise SourceError(
        f"cannot read passages from a {type(index).__name__}: pass an index URI ({_usage()}) "
        "or a list of LlamaIndex nodes, LangChain Documents or (id, text) pairs"
    )
