"""Passages already in Python: LlamaIndex nodes or documents, LangChain ``Document``s, or
``(id, text)`` pairs. Text only: their vectors come from the model, through the store.

Objects are recognised by their attributes, so neither framework is imported. The objects stay
the caller's; batches are read from them one slice at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from queryfit.data.model import content_id
from queryfit.sources.base import Fields, PassageSource, RawBatch


def _item(obj: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(id, text, metadata) of one object, or a TypeError saying what it is not."""
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return obj[0], obj[1], {}
    if isinstance(obj, dict) and "id" in obj and "text" in obj:
        return obj["id"], obj["text"], {k: v for k, v in obj.items() if k not in ("id", "text")}
    if hasattr(obj, "page_content"):  # LangChain Document: the id is optional there
        text = obj.page_content
        passage_id = getattr(obj, "id", None) or (obj.metadata or {}).get("id")
        if passage_id is None and isinstance(text, str):
            passage_id = content_id("doc-", text)
        return passage_id, text, dict(getattr(obj, "metadata", None) or {})
    if hasattr(obj, "node_id") and (hasattr(obj, "get_content") or hasattr(obj, "text")):
        text = obj.text if isinstance(getattr(obj, "text", None), str) else obj.get_content()
        return obj.node_id, text, dict(getattr(obj, "metadata", None) or {})
    raise TypeError(type(obj).__name__)


class MemorySource(PassageSource):
    scheme = "python"

    def __init__(self, items: Sequence[Any], uri: str | None = None) -> None:
        super().__init__(uri or f"<{len(items)} Python objects>")
        self.items = items
        self.fields = Fields(id="id", text="text", vector=None)

    def count(self) -> int:
        return len(self.items)

    def _dim(self) -> int | None:
        return None

    def _read(self, batch_size: int, vectors: bool, metadata: bool) -> Iterator[RawBatch]:
        for start in range(0, len(self.items), batch_size):
            ids, texts, meta = [], [], []
            for offset, obj in enumerate(self.items[start : start + batch_size]):
                try:
                    passage_id, text, data = _item(obj)
                except TypeError as exc:
                    raise self.fail(
                        f"item {start + offset} is a {exc.args[0]}",
                        "pass LlamaIndex nodes or documents, LangChain Documents, "
                        "(id, text) pairs or {'id', 'text'} dicts",
                    ) from None
                ids.append(passage_id)
                texts.append(text)
                meta.append(data)
            yield RawBatch(ids=ids, texts=texts, metadata=meta if metadata else None)
