import numpy as np
import pytest

from iwae_np.model import Architecture, init_params, sample_eps
from iwae_np.tree import tree_map


@pytest.fixture
def rng():
    return np.random.default_rng(20160201)


def small_problem(arch, k, batch, seed=0, dtype=np.float64, scale=0.3):
    """A small random model (parameters perturbed off Glorot/zero), binary x and noise eps."""
    rng = np.random.default_rng(seed)
    params = init_params(arch, rng, dtype)
    params = tree_map(lambda p: p + (scale * rng.standard_normal(p.shape)).astype(dtype), params)
    x = (rng.uniform(size=(batch, arch.x_dim)) < 0.5).astype(dtype)
    eps = sample_eps(rng, params, k, batch)
    return params, x, eps


TINY = {
    "one-layer": Architecture(12, (3,), ((6, 5),), ((5, 6),)),
    "two-layer": Architecture(12, (4, 2), ((6, 5), (4, 3)), ((5, 6), (3, 4))),
}
