r"""Hand-written dense layers and tanh MLPs over a named parameter tree.

Convention (documented for other frameworks in ``docs/oracle.md``): a dense layer is

.. math::
    y = x W + b, \qquad W \in \mathbb R^{n_{in} \times n_{out}},\ b \in \mathbb R^{n_{out}}

so ``W`` has shape ``(n_in, n_out)`` (PyTorch's ``nn.Linear.weight`` is its transpose).
A layer is a dict ``{"W": ..., "b": ...}``; an MLP is a dict of named layers
``{"hidden_0": ..., "hidden_1": ..., <head>: ...}`` and the names are stable.
"""
import math

import autograd.numpy as anp
import numpy as np

__all__ = ["glorot_uniform", "init_dense", "dense", "tanh_mlp", "init_mlp"]


def glorot_uniform(rng, n_in, n_out, dtype=np.float64):
    r"""Glorot & Bengio (2010) uniform init: :math:`W_{ij} \sim U(-r, r)`, :math:`r = \sqrt{6 / (n_{in} + n_{out})}`."""
    r = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-r, r, size=(n_in, n_out)).astype(dtype)


def init_dense(rng, n_in, n_out, dtype=np.float64):
    """A dense layer ``{"W": Glorot-uniform (n_in, n_out), "b": zeros (n_out,)}``."""
    return {"W": glorot_uniform(rng, n_in, n_out, dtype), "b": np.zeros(n_out, dtype=dtype)}


def dense(layer, x):
    r"""Affine map :math:`y = x W + b` over the last axis of ``x``: ``(k, batch, n_in) -> (k, batch, n_out)``."""
    return x @ layer["W"] + layer["b"]


def init_mlp(rng, n_in, hidden, heads, dtype=np.float64):
    """Parameters of a tanh MLP: ``hidden_0 .. hidden_{n-1}`` then one linear layer per head.

    ``hidden`` is a sequence of widths; ``heads`` maps a head name to its output width
    (``{"mu": d, "log_sigma": d}`` for a Gaussian layer, ``{"logits": D}`` for the Bernoulli output).
    Layers are initialized in that order from the one generator ``rng``.
    """
    params, width = {}, n_in
    for i, n_out in enumerate(hidden):
        params[f"hidden_{i}"] = init_dense(rng, width, n_out, dtype)
        width = n_out
    for name, n_out in heads.items():
        params[name] = init_dense(rng, width, n_out, dtype)
    return params


def tanh_mlp(params, x):
    r"""Hidden layers :math:`a \leftarrow \tanh(a W_i + b_i)` for ``hidden_0, hidden_1, ...``.

    Returns the last hidden activation; the caller applies the linear heads with :func:`dense`.
    """
    a, i = x, 0
    while f"hidden_{i}" in params:
        a = anp.tanh(dense(params[f"hidden_{i}"], a))
        i += 1
    return a
