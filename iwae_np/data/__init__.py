"""Data: the named data sets of the paper's experiments, their file readers, downloads, binarization.

- :mod:`iwae_np.data.datasets`: :func:`load_dataset` by name, :class:`Dataset`, dynamic :func:`binarize`,
  subsets and the data record of a run;
- :mod:`iwae_np.data.readers`: IDX, ``.amat`` and Omniglot ``.mat`` readers that name the file and the fault;
- :mod:`iwae_np.data.download`: verified, atomic downloads for users with a network.
"""
from .datasets import (DATASETS, FASHION_MNIST_SYSTEM_DIR, MNIST5K_SPLIT_SEED, Dataset, DataSubset, binarize,
                       data_spec, dataset_from_spec, load_data, load_dataset)
from .download import RESOURCES, DownloadError, Resource, default_cache_dir, download_file
from .readers import IMAGE_DIM, read_amat, read_idx, read_omniglot_mat

__all__ = ["DATASETS", "Dataset", "DataSubset", "load_dataset", "load_data", "binarize", "data_spec",
           "dataset_from_spec", "read_idx", "read_amat", "read_omniglot_mat", "Resource", "RESOURCES",
           "download_file", "DownloadError", "default_cache_dir", "MNIST5K_SPLIT_SEED",
           "FASHION_MNIST_SYSTEM_DIR", "IMAGE_DIM"]
