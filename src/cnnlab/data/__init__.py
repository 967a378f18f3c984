"""Data: the data interface and its registry of kinds (source.py), and the kinds: IDX datasets and in-memory
arrays (arrays.py), image folders (imagedata.py); batches, their order and sharding (loader.py). Importing the
package registers the kinds."""

from .arrays import ArraySource, IdxSource
from .datasets import DATASETS, ArrayDataset, DatasetNotFoundError, load_idx_dataset, load_mnist_sample
from .idx import IdxError, read_idx
from .imagedata import FolderSource
from .loader import InMemoryLoader, InputNorm, Preprocess, Shard
from .source import KINDS, DataSource, open_eval_source, open_source, read_file, register

__all__ = [
    "DATASETS",
    "KINDS",
    "ArrayDataset",
    "ArraySource",
    "DataSource",
    "DatasetNotFoundError",
    "FolderSource",
    "IdxSource",
    "load_idx_dataset",
    "load_mnist_sample",
    "open_eval_source",
    "open_source",
    "read_file",
    "register",
    "IdxError",
    "read_idx",
    "InMemoryLoader",
    "InputNorm",
    "Preprocess",
    "Shard",
]
