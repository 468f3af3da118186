"""Downloads for users with a network: mirrors, published checksums, atomic writes.

:func:`download_file` fetches one :class:`Resource` into a directory, verifies it (its published
checksum, or where none is published its structure) and only then moves it into place, with the
package's one atomic writer (:func:`iwae_np.files.atomic_write`): the target is absent or complete.
Tests never download; they point :data:`RESOURCES` at ``file://`` URLs of files they write.
"""
import dataclasses
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..files import atomic_write

__all__ = ["Resource", "RESOURCES", "download_file", "DownloadError", "default_cache_dir"]


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

#: The Omniglot split of the paper (section 5, 24,345 / 8,070): the structure check of a downloaded file.
OMNIGLOT_SIZES = (24345, 8070)


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

    Each URL is tried in turn. The bytes go through :func:`iwae_np.files.atomic_write`: the
    temporary file is verified (the checksum when the resource has one, else ``validate(tmp_path)``,
    which must raise ``ValueError`` on a bad file) and only then renamed into place, so the
    target is either absent or complete. The temporary file is removed on any failure.
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
        digest = hashlib.new(resource.checksum[0]) if resource.checksum else None

        def fetch(out, url=url, digest=digest):
            with opener(url) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    if digest is not None:
                        digest.update(chunk)

        def verify(tmp, digest=digest):
            if digest is None:
                validate(tmp)
            elif digest.hexdigest() != resource.checksum[1].lower():
                raise ValueError(f"checksum mismatch: {resource.checksum[0]} {digest.hexdigest()}, "
                                 f"expected {resource.checksum[1]}")

        try:
            return atomic_write(target, fetch, verify)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            failures.append(f"  {url}: {type(e).__name__}: {e}")
    raise DownloadError(f"could not download {resource.filename}:\n" + "\n".join(failures) +
                        f"\nWith no network, download it elsewhere from {resource.urls[0]} "
                        f"and place it at {target} (or in a directory passed as root / --data-dir).")


