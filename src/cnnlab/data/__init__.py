"""Data: IDX files (MNIST, Fashion-MNIST), in-memory datasets, batches and input normalization."""

from .datasets import DATASETS, ArrayDataset, DatasetNotFoundError, load_idx_dataset, load_mnist_sample
from .idx import IdxError, read_idx
from .loader import InMemoryLoader, InputNorm, Preprocess

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DatasetNotFoundError",
    "load_idx_dataset",
    "load_mnist_sample",
    "IdxError",
    "read_idx",
    "InMemoryLoader",
    "InputNorm",
    "Preprocess",
]
