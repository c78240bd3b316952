"""The data stage: question/passage datasets, their files, and the leak-free split."""

from queryfit.data.formats import FORMATS, load_dataset, save_dataset
from queryfit.data.model import QADataset, content_id
from queryfit.data.split import split_dataset

__all__ = ["FORMATS", "QADataset", "content_id", "load_dataset", "save_dataset", "split_dataset"]
