"""Data: the data interface (source.py) and its implementations: IDX datasets and in-memory arrays
(arrays.py), image folders (imagedata.py); batches, their order and sharding (loader.py)."""

from .arrays import ArraySource, IdxSource
from .datasets import DATASETS, ArrayDataset, DatasetNotFoundError, load_idx_dataset, load_mnist_sample
from .idx import IdxError, read_idx
from .loader import InMemoryLoader, InputNorm, Preprocess, Shard
from .source import DataSource, open_eval_source, open_source, read_file

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "ArraySource",
    "DataSource",
    "DatasetNotFoundError",
    "IdxSource",
    "load_idx_dataset",
    "load_mnist_sample",
    "open_eval_source",
    "open_source",
    "read_file",
    "IdxError",
    "read_idx",
    "InMemoryLoader",
    "InputNorm",
    "Preprocess",
    "Shard",
]
