import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iwae_np.verify.problems import SMALL_ARCHITECTURES, random_problem


@pytest.fixture
def rng():
    return np.random.default_rng(20160201)


def small_problem(arch, k, batch, seed=0, dtype=np.float64, scale=0.3):
    """A small random model (parameters perturbed off Glorot/zero), binary x and noise eps, from ``seed``."""
    return random_problem(arch, k, batch, np.random.default_rng(seed), dtype, scale)


#: The small architectures of ``iwae-np check``.
TINY = SMALL_ARCHITECTURES


ROOT = Path(__file__).resolve().parents[1]


def load_example(name):
    """The module ``examples/<name>.py``, freshly executed (the examples are standalone files users copy, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env(**extra):
    """The environment of a child process that must import this checkout's iwae_np, with BLAS at one thread."""
    path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)


def run_driver(hook, step, flag, argv, timeout=300):
    """Run ``iwae-np argv`` in a child process with a hook of ``tests/cli_driver.py`` (None: none), to the end."""
    cmd = [sys.executable, str(ROOT / "tests" / "cli_driver.py"), hook or "none", str(step), str(flag)] + argv
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())


def write_idx_images(path, images):
    """An IDX3 file (MNIST's format: magic 0x00000803, big-endian int32 sizes, uint8 pixels)."""
    n = images.shape[0]
    path.write_bytes(struct.pack(">4i", 0x803, n, 28, 28) + np.asarray(images).astype(np.uint8).tobytes())


@pytest.fixture
def idx_data(tmp_path):
    """A small gray 'mnist' directory (IDX files): 40 training and 10 test images, quick to load in a child."""
    data = tmp_path / "idx-data"
    data.mkdir()
    rng = np.random.default_rng(0)
    write_idx_images(data / "train-images-idx3-ubyte", rng.integers(0, 256, size=(40, 784)))
    write_idx_images(data / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(10, 784)))
    return data


#: Set by CI (.ci/run), which installs the test extra: there a missing optional dependency fails the
#: tests that need it instead of skipping them silently.
REQUIRE_OPTIONAL = os.environ.get("IWAE_NP_REQUIRE_OPTIONAL") == "1"


def require_module(name):
    """Skip the test when ``name`` (torch, JAX: optional dependencies) is not installed, except where
    IWAE_NP_REQUIRE_OPTIONAL=1 (CI, which installs them): there, fail. Checked without importing it
    (torch and JAX take seconds to import; the tests that need them run them in child processes)."""
    import importlib.util
    if importlib.util.find_spec(name) is None:
        if REQUIRE_OPTIONAL:
            pytest.fail(f"{name} is not installed, and IWAE_NP_REQUIRE_OPTIONAL=1 (CI) requires it")
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' installs it)")


def record_minibatches(monkeypatch):
    """Wrap the training loop's ``train_step`` to record a copy of every minibatch it is given."""
    from iwae_np.experiments import training
    seen = []
    real = training.train_step

    def recording(params, opt_state, x, *args, **kwargs):
        seen.append(np.array(x))
        return real(params, opt_state, x, *args, **kwargs)

    monkeypatch.setattr(training, "train_step", recording)
    return seen
