"""From passages to (question, passage) pairs."""

from .cloze import inverse_cloze_dataset, split_sentences

__all__ = ["inverse_cloze_dataset", "split_sentences"]
