"""Passages and vectors straight from where users keep them: no re-chunking, no re-embedding.

A :class:`PassageSource` streams (id, text, vector, metadata) in batches and says its vector
dimension. :func:`open_source` opens one from ``--index`` URIs (``lancedb:PATH?table=NAME``,
``chroma:PATH?collection=NAME``, ``qdrant:PATH?collection=NAME``, ``faiss:INDEX?docs=FILE.jsonl``,
``parquet:FILE``, ``jsonl:FILE``) or from Python objects (LlamaIndex nodes, LangChain
``Document``s, ``(id, text)`` pairs). Each store's library is imported only when it is opened.

The index path of training and evaluation is :mod:`queryfit.sources.index`; ``search`` over an
index with and without an adapter is :mod:`queryfit.sources.search`.
"""

from queryfit.sources.base import DEFAULT_BATCH_SIZE, Fields, Hit, PassageBatch, PassageSource
from queryfit.sources.uri import FORMS, open_source, parse_uri

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FORMS",
    "Fields",
    "Hit",
    "PassageBatch",
    "PassageSource",
    "open_source",
    "parse_uri",
]
