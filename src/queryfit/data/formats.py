"""Dataset files: LlamaIndex JSON, BEIR folders and JSONL pairs, read and written.

* ``llamaindex``: the JSON file ``EmbeddingQAFinetuneDataset.save_json`` writes, byte for byte.
* ``beir``: a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``. A
  passage's text is ``title + " " + text`` when the title is non-empty (the convention of BEIR's
  own sentence-transformers models); we save with an empty title so the text round-trips.
* ``jsonl``: one ``{"query": ..., "passage": ...}`` object per line (``.jsonl`` or ``.jsonl.gz``).
  Missing ids are derived from the text (``q-``/``d-`` + 16 hex digits of its sha256), so repeated
  passages collapse into one corpus entry and repeated questions into one query.

Every loader collects all problems it finds and raises one :class:`DatasetError` naming the file,
the offending ids and the fix.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from queryfit import _io
from queryfit.data.model import (
    QADataset,
    content_id,
    content_problems,
    raise_problems,
    surrogate_problem,
)
from queryfit.errors import DatasetError

__all__ = ["FORMATS", "load_dataset", "save_dataset"]

log = logging.getLogger(__name__)

FORMATS = ("llamaindex", "beir", "jsonl")
_FIX_MISSING = "pass a LlamaIndex JSON file, a BEIR folder or a JSONL file"


# --------------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------------


def write_file(path: Path, data: bytes) -> None:
    """Write a file atomically, turning OS errors into a DatasetError that names the path."""
    try:
        _io.write_bytes(path, data)
    except OSError as exc:
        raise DatasetError(
            f"cannot write {path}: {exc.strerror or exc}. Fix: choose a writable path."
        ) from exc


def _lines_bytes(lines: list[str]) -> bytes:
    """UTF-8 text with every line newline-terminated; nothing at all for no lines."""
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _open_text(path: Path, mode: str = "r") -> IO[str]:
    """Open a text file as UTF-8 (BOM tolerated on read), transparently gunzipping ``.gz``."""
    encoding = "utf-8-sig" if mode == "r" else "utf-8"
    if _is_gz(path):
        return gzip.open(path, mode + "t", encoding=encoding, newline="")  # type: ignore[return-value]
    return open(path, mode, encoding=encoding, newline="")


def _read_lines(path: Path, source: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) pairs, converting IO/decoding failures into DatasetError."""
    try:
        with _open_text(path) as fh:
            yield from enumerate(fh, start=1)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise DatasetError(
            f"cannot read {source}: {exc}. Fix: pass an UTF-8 text file (optionally gzipped)."
        ) from exc


class _ObjectWithDuplicates(dict):
    """A JSON object that remembers keys it saw twice (json.load silently keeps the last)."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _ObjectWithDuplicates()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _parse_json(text: str, **kwargs: Any) -> Any:
    """``json.loads`` with nesting too deep for Python's stack turned into a JSONDecodeError."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _missing(path: Path) -> DatasetError:
    return DatasetError(f"no such file: {path}; {_FIX_MISSING}.")


def _str_id(value: Any) -> str | None:
    """Accept string ids and integer ids (common in BEIR dumps); anything else is no id."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# --------------------------------------------------------------------------------------------
# LlamaIndex JSON
# --------------------------------------------------------------------------------------------


def _load_llamaindex(path: Path) -> QADataset:
    """Parse a LlamaIndex QA JSON file, reporting duplicate keys that json.load would hide."""
    source = str(path)
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        raise DatasetError(
            f"{source} is a folder, not a LlamaIndex JSON file; "
            "Fix: pass format='beir' for a BEIR folder or the path of the .json file."
        )
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"cannot read {source}: {exc}. Fix: check the path.") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"cannot read {source}: not UTF-8 ({exc.reason} at byte {exc.start}). "
            "Fix: re-save the file as UTF-8 JSON."
        ) from exc
    try:
        data = _parse_json(text, object_pairs_hook=_pairs_hook)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"invalid JSON in {source} at line {exc.lineno} column {exc.colno}: {exc.msg}. "
            "Fix: repair the JSON (a LlamaIndex QA file is one object with queries, corpus and "
            "relevant_docs)."
        ) from exc
    if not isinstance(data, dict):
        raise_problems(
            source,
            [f"top level is a {type(data).__name__}, not an object"],
            "a LlamaIndex QA file is one JSON object with queries, corpus and relevant_docs",
        )
    problems: list[str] = []
    parts: dict[str, dict[str, Any]] = {}
    for key, what in (("queries", "query"), ("corpus", "doc"), ("relevant_docs", "query")):
        value = data.get(key)
        if value is None:
            problems.append(f"missing key {key!r}")
            value = {}
        elif not isinstance(value, dict):
            problems.append(f"{key!r} is a {type(value).__name__}, not an object")
            value = {}
        for dup in getattr(value, "duplicates", []):
            problems.append(f"duplicate {what} id {dup!r} in {key!r}")
        parts[key] = value
    mode = data.get("mode", "text")
    if not isinstance(mode, str):
        problems.append(f"mode {mode!r} is not a string")
    problems += content_problems(parts["queries"], parts["corpus"], parts["relevant_docs"])
    raise_problems(source, problems)
    return QADataset(
        queries=dict(parts["queries"]),
        corpus=dict(parts["corpus"]),
        relevant_docs={q: list(d) for q, d in parts["relevant_docs"].items()},
        mode=mode,
    )


def _save_llamaindex(ds: QADataset, path: Path) -> None:
    """Write exactly the bytes ``EmbeddingQAFinetuneDataset.save_json`` writes.

    That is ``json.dump(model_dump(), f, indent=4)``: ASCII-escaped, 4-space indent, key
    order queries/corpus/relevant_docs/mode, no trailing newline.
    """
    data = {
        "queries": ds.queries,
        "corpus": ds.corpus,
        "relevant_docs": ds.relevant_docs,
        "mode": ds.mode,
    }
    write_file(path, json.dumps(data, indent=4).encode("ascii"))


# --------------------------------------------------------------------------------------------
# JSONL pairs
# --------------------------------------------------------------------------------------------


def _load_jsonl(path: Path) -> QADataset:
    """Read one (query, passage[s]) object per line; lines without a query add corpus entries."""
    source = str(path)
    if not path.exists():
        raise _missing(path)
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    problems: list[str] = []

    def add_doc(lineno: int, did: str | None, text: Any) -> str | None:
        if not isinstance(text, str):
            problems.append(f"line {lineno}: passage text is {type(text).__name__}, not a string")
            return None
        named = f" {did!r}" if did is not None else ""
        if not text.strip():
            problems.append(f"line {lineno}: passage{named} has empty text")
            return None
        if (bad := surrogate_problem(text)) is not None:
            problems.append(f"line {lineno}: passage{named} text {bad}")
            return None
        did = did if did is not None else content_id("d-", text)
        known = corpus.get(did)
        if known is None:
            corpus[did] = text
        elif known != text:
            problems.append(f"line {lineno}: duplicate passage id {did!r} with different text")
            return None
        return did

    for lineno, line in _read_lines(path, source):
        if not line.strip():
            continue
        try:
            row = _parse_json(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {lineno}: expected an object, got {type(row).__name__}")
            continue
        # Passages: "passage" (+ "passage_id") or "passages" (+ "passage_ids").
        if "passage" in row and "passages" in row:
            problems.append(f"line {lineno}: has both 'passage' and 'passages'; keep one")
            continue
        if "passages" in row:
            texts = row["passages"]
            ids = row.get("passage_ids")
            if not isinstance(texts, list):
                problems.append(f"line {lineno}: 'passages' must be a list of strings")
                continue
            if ids is not None and (not isinstance(ids, list) or len(ids) != len(texts)):
                problems.append(
                    f"line {lineno}: 'passage_ids' must be a list as long as 'passages'"
                )
                continue
        elif "passage" in row:
            texts = [row["passage"]]
            ids = [row["passage_id"]] if "passage_id" in row else None
        else:
            problems.append(f"line {lineno}: no 'passage' or 'passages' field")
            continue
        doc_ids: list[str] = []
        for i, text in enumerate(texts):
            did = None
            if ids is not None:
                did = _str_id(ids[i])
                if did is None:
                    problems.append(f"line {lineno}: passage id {ids[i]!r} is not a string")
                    continue
            got = add_doc(lineno, did, text)
            if got is not None and got not in doc_ids:
                doc_ids.append(got)
        if "query" not in row:
            if "query_id" in row:
                problems.append(f"line {lineno}: has 'query_id' but no 'query' text")
            continue  # a corpus-only line: a passage no question points at
        qtext = row["query"]
        if not isinstance(qtext, str):
            problems.append(f"line {lineno}: query text is {type(qtext).__name__}, not a string")
            continue
        if not qtext.strip():
            problems.append(f"line {lineno}: query has empty text")
            continue
        if (bad := surrogate_problem(qtext)) is not None:
            problems.append(f"line {lineno}: query text {bad}")
            continue
        if "query_id" in row:
            qid = _str_id(row["query_id"])
            if qid is None:
                problems.append(f"line {lineno}: query_id {row['query_id']!r} is not a string")
                continue
        else:
            qid = content_id("q-", qtext)
        known = queries.get(qid)
        if known is None:
            queries[qid] = qtext
            relevant[qid] = []
        elif known != qtext:
            problems.append(f"line {lineno}: duplicate query id {qid!r} with different text")
            continue
        rel = relevant[qid]
        rel.extend(d for d in doc_ids if d not in rel)
    if not problems:
        problems = content_problems(queries, corpus, relevant)
    raise_problems(
        source,
        problems,
        'each line must be an object like {"query": "...", "passage": "..."} '
        '(or "passages": [...]), with non-empty text and ids unique per text',
    )
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def _save_jsonl(ds: QADataset, path: Path) -> None:
    """One line per query with all its passages, then one line per passage no query uses."""
    used: set[str] = set()
    lines: list[str] = []
    for qid, text in ds.queries.items():
        pids = ds.relevant_docs.get(qid, [])
        used.update(pids)
        row = {
            "query_id": qid,
            "query": text,
            "passage_ids": pids,
            "passages": [ds.corpus[d] for d in pids],
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    for did, text in ds.corpus.items():
        if did not in used:
            lines.append(json.dumps({"passage_id": did, "passage": text}, ensure_ascii=False))
    data = _lines_bytes(lines)
    if _is_gz(path):
        data = gzip.compress(data, mtime=0)
    write_file(path, data)


# --------------------------------------------------------------------------------------------
# BEIR folder
# --------------------------------------------------------------------------------------------


def _beir_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_beir_jsonl(path: Path, problems: list[str], with_title: bool) -> dict[str, str]:
    """Read a BEIR ``{"_id", ["title",] "text"}`` file into id -> text, noting problems."""
    out: dict[str, Any] = {}
    name = path.name
    for lineno, line in _read_lines(path, str(path)):
        if not line.strip():
            continue
        try:
            row = _parse_json(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{name} line {lineno}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or "_id" not in row:
            problems.append(f"{name} line {lineno}: expected an object with '_id' and 'text'")
            continue
        rid = _str_id(row["_id"])
        if rid is None:
            problems.append(f"{name} line {lineno}: _id {row['_id']!r} is not a string")
            continue
        if rid in out:
            problems.append(f"{name} line {lineno}: duplicate _id {rid!r}")
            continue
        text = row.get("text")
        title = row.get("title") if with_title else None
        if isinstance(text, str) and isinstance(title, str) and title.strip():
            text = f"{title} {text}" if text.strip() else title
        out[rid] = text
    return out


def _load_beir(folder: Path, split: str | None) -> QADataset:
    """Read a BEIR folder; queries absent from the chosen qrels split are dropped, not errors."""
    source = str(folder)
    if not folder.exists():
        raise _missing(folder)
    corpus_path = _beir_file(folder, "corpus")
    queries_path = _beir_file(folder, "queries")
    qrels_dir = folder / "qrels"
    absent = [
        name
        for name, p in (("corpus.jsonl", corpus_path), ("queries.jsonl", queries_path))
        if p is None
    ]
    if not qrels_dir.is_dir():
        absent.append("qrels/")
    if absent:
        raise DatasetError(
            f"{source} is not a BEIR folder: missing {', '.join(absent)}. Fix: a BEIR folder "
            "holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv."
        )
    assert corpus_path is not None and queries_path is not None
    splits = sorted(p.name[: -len(".tsv")] for p in qrels_dir.glob("*.tsv"))
    if split is None:
        if "test" in splits:
            split = "test"
        elif len(splits) == 1:
            split = splits[0]
        else:
            found = ", ".join(splits) if splits else "none"
            what = f"{source}: cannot choose a qrels split (found: {found}). Fix: pass"
            raise DatasetError(
                f"{what} split=<name> for one of qrels/<name>.tsv.",
                cli=f"{what} --split NAME for one of qrels/NAME.tsv.",
            )
    elif split not in splits:
        found = ", ".join(splits) if splits else "none"
        what = f"{source}: no qrels/{split}.tsv (found: {found}). Fix: pass"
        raise DatasetError(
            f"{what} split= one of the found splits.",
            cli=f"{what} --split with one of the found splits.",
        )
    problems: list[str] = []
    corpus = _read_beir_jsonl(corpus_path, problems, with_title=True)
    all_queries = _read_beir_jsonl(queries_path, problems, with_title=False)
    relevant: dict[str, list[str]] = {}
    qrels_path = qrels_dir / f"{split}.tsv"
    for lineno, line in _read_lines(qrels_path, str(qrels_path)):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            problems.append(
                f"qrels/{split}.tsv line {lineno}: expected 3 tab-separated columns, "
                f"got {len(cols)}"
            )
            continue
        qid, did, score_text = (c.strip() for c in cols)
        try:
            score = float(score_text)
        except ValueError:
            if lineno == 1:
                continue  # the header row, e.g. query-id\tcorpus-id\tscore
            problems.append(
                f"qrels/{split}.tsv line {lineno}: score {score_text!r} is not a number"
            )
            continue
        if not math.isfinite(score):
            problems.append(
                f"qrels/{split}.tsv line {lineno}: score {score_text!r} is not a finite number "
                "(write 1 for relevant, 0 for not relevant)"
            )
            continue
        if qid not in all_queries:
            problems.append(f"qrels/{split}.tsv line {lineno}: unknown query {qid!r}")
            continue
        if did not in corpus:
            problems.append(f"qrels/{split}.tsv line {lineno}: unknown doc {did!r}")
            continue
        if score <= 0:
            continue  # judged not relevant
        rel = relevant.setdefault(qid, [])
        if did not in rel:
            rel.append(did)
    # Keep queries.jsonl's order; BEIR ships every split's queries in one file, so drop the rest.
    queries = {q: t for q, t in all_queries.items() if q in relevant}
    dropped = len(all_queries) - len(queries)
    if dropped:
        log.info(
            "%s: dropped %d of %d queries with no positive judgement in qrels/%s.tsv",
            source,
            dropped,
            len(all_queries),
            split,
        )
    problems += content_problems(queries, corpus, relevant)
    raise_problems(
        source,
        problems,
        "every _id must be unique with non-empty text, and every qrels row must name a query of "
        "queries.jsonl and a doc of corpus.jsonl",
    )
    return QADataset(queries=queries, corpus=corpus, relevant_docs=relevant)


def _tsv_safe(value: str) -> bool:
    """Whether ``value`` reads back unchanged from a qrels column (split on tabs, stripped)."""
    return value == value.strip() and not any(c in value for c in "\t\n\r")


def _save_beir(ds: QADataset, folder: Path, split: str) -> None:
    """Write a BEIR folder; titles are empty so that load(save(ds)) == ds."""
    corpus_lines = [
        json.dumps({"_id": d, "title": "", "text": t}, ensure_ascii=False)
        for d, t in ds.corpus.items()
    ]
    query_lines = [
        json.dumps({"_id": q, "text": t}, ensure_ascii=False) for q, t in ds.queries.items()
    ]
    qrels = ["query-id\tcorpus-id\tscore"]
    for qid in ds.queries:
        for did in ds.relevant_docs.get(qid, []):
            if not (_tsv_safe(qid) and _tsv_safe(did)):
                raise DatasetError(
                    f"cannot save {folder} as BEIR: id {qid!r}/{did!r} contains a tab or line "
                    "break, or starts or ends with whitespace, which qrels TSV cannot hold. "
                    "Fix: save as LlamaIndex JSON or JSONL instead."
                )
            qrels.append(f"{qid}\t{did}\t1")
    write_file(folder / "corpus.jsonl", _lines_bytes(corpus_lines))
    write_file(folder / "queries.jsonl", _lines_bytes(query_lines))
    write_file(folder / "qrels" / f"{split}.tsv", _lines_bytes(qrels))


# --------------------------------------------------------------------------------------------
# Public load / save
# --------------------------------------------------------------------------------------------


def _detect_format(path: Path, for_saving: bool) -> str:
    """Pick a format from the path: folder -> beir, .jsonl[.gz] -> jsonl, .json -> llamaindex."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith(".json"):
        return "llamaindex"
    if path.is_dir() or (for_saving and not path.suffix):
        return "beir"
    if not for_saving and not path.exists():
        raise _missing(path)
    what = f"cannot tell the format of {path} from its name. Fix: use a .json (LlamaIndex), "
    raise DatasetError(
        f"{what}.jsonl (pairs) or folder (BEIR) path, or pass format= one of {', '.join(FORMATS)}.",
        cli=f"{what}.jsonl (pairs) or folder (BEIR) path; rename the file if needed.",
    )


def _check_format(fmt: str) -> str:
    fmt = fmt.lower()
    if fmt not in (*FORMATS, "auto"):
        raise DatasetError(
            f"unknown dataset format {fmt!r}. Fix: use one of auto, {', '.join(FORMATS)}."
        )
    return fmt


def load_dataset(path: str | Path, format: str = "auto", *, split: str | None = None) -> QADataset:
    """Load and validate a dataset in any supported format.

    ``split`` picks ``qrels/<split>.tsv`` of a BEIR folder (default: ``test`` if present, else
    the only one); it is an error for the other formats, which have no splits.
    """
    path = Path(path)
    fmt = _check_format(format)
    if fmt == "auto":
        if not path.exists():
            raise _missing(path)
        fmt = _detect_format(path, for_saving=False)
    if split is not None and fmt != "beir":
        raise DatasetError(
            f"split={split!r} given for {path}, which is not a BEIR folder. Fix: drop split=.",
            cli=f"--split {split} given for {path}, which is not a BEIR folder. Fix: drop --split.",
        )
    if fmt == "llamaindex":
        return _load_llamaindex(path)
    if fmt == "jsonl":
        return _load_jsonl(path)
    return _load_beir(path, split)


def save_dataset(
    ds: QADataset, path: str | Path, format: str = "auto", *, split: str = "test"
) -> None:
    """Save in one of the supported formats; ``split`` names the BEIR qrels file.

    The dataset is validated first so that we never write a file we would refuse to load.
    """
    path = Path(path)
    fmt = _check_format(format)
    if fmt == "auto":
        fmt = _detect_format(path, for_saving=True)
    ds.validate()
    if fmt == "llamaindex":
        _save_llamaindex(ds, path)
    elif fmt == "jsonl":
        _save_jsonl(ds, path)
    else:
        if path.exists() and not path.is_dir():
            raise DatasetError(
                f"cannot save BEIR folder {path}: a file is in the way. Fix: pass a folder path."
            )
        _save_beir(ds, path, split)
