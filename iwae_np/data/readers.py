r"""Readers of the data sets' file formats, each validating what it reads.

- :func:`read_idx`: MNIST's and Fashion-MNIST's IDX format, gzipped or raw;
- :func:`read_amat`: Larochelle's fixed-binarization MNIST, text 0/1;
- :func:`read_omniglot_mat`: the IWAE authors' Omniglot ``chardata.mat``, MATLAB column-major images.

A missing file raises ``FileNotFoundError``; a truncated or corrupt one a ``ValueError`` naming
the file and the fault.
"""
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "read_amat", "read_omniglot_mat", "IMAGE_DIM"]

#: Pixels of one 28 x 28 image.
IMAGE_DIM = 784


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


