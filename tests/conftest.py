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
