r"""The IWAE/VAE model: L diagonal-Gaussian stochastic layers and a Bernoulli decoder (paper section 2, appendix C).

Generative model :math:`p_\theta` and recognition model :math:`q_\phi` (paper section 2 and appendix C)::

    p(h_L) = N(0, I)
    p(h_l | h_{l+1}) = N(mu, sigma^2)        network "p_h{l}"   (l = 1 .. L-1)
    p(x | h_1) = Bernoulli(sigmoid(logits))  network "p_x"
    q(h_1 | x) = N(mu, sigma^2)              network "q_h1"
    q(h_{l+1} | h_l) = N(mu, sigma^2)        network "q_h{l+1}"

Every network is a tanh MLP with linear heads (``mu`` and ``log_sigma``, or ``logits``);
sigma = exp(log_sigma). The parameter tree is ``{network: {layer: {"W", "b"}}}``; networks
whose names start with ``q_`` are the recognition parameters phi, ``p_`` the generative theta.

Shapes: ``x (batch, D)``; noise ``eps[l - 1] (k, batch, d_l)``, one array per stochastic
layer ``h_l``; latents ``h[l - 1] (k, batch, d_l)``; log weights ``(k, batch)``.
Written in ``autograd.numpy``: autograd differentiates every function here. In formulas the layer is
a superscript (:math:`h^l`) and a subscript is a sample (:math:`h_i`), as in ``docs/math.md``; code
names number layers from 1 (``h1``, ``q_h2``).
"""
from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

from .densities import bernoulli_log_likelihood, gaussian_log_density, standard_normal_log_density
from .networks import dense, init_mlp, tanh_mlp
from .special import sigmoid
from .validation import NonFiniteLogWeightError, check_log_weights_finite, model_structure, validate_inputs

__all__ = ["Architecture", "PRESETS", "get_architecture", "init_params", "architecture_of",
           "sample_eps", "gaussian_layer", "sample_posterior", "recognition_stats",
           "generative_log_density_terms", "recognition_log_density_terms", "generative_log_density",
           "recognition_log_density", "log_weight_terms", "log_importance_weights",
           "sample_generative", "network_names", "NonFiniteLogWeightError"]


@dataclass(frozen=True)
class Architecture:
    """Layer sizes of the model.

    ``latent_dims[l]`` is the width of stochastic layer ``h_{l+1}``.
    ``q_hidden[l]`` are the tanh widths of the recognition MLP into ``h_{l+1}`` (from x or ``h_l``).
    ``p_hidden[l]`` are the tanh widths of the generative MLP from ``h_{l+1}`` down to ``h_l``
    (down to x for ``l = 0``).
    """
    x_dim: int = 784
    latent_dims: tuple = (50,)
    q_hidden: tuple = ((200, 200),)
    p_hidden: tuple = ((200, 200),)

    def __post_init__(self):
        L = len(self.latent_dims)
        if L < 1:
            raise ValueError("an architecture needs at least one stochastic layer")
        if len(self.q_hidden) != L or len(self.p_hidden) != L:
            raise ValueError(f"q_hidden and p_hidden need one entry per stochastic layer ({L}), "
                             f"got {len(self.q_hidden)} and {len(self.p_hidden)}")
        sizes = [self.x_dim, *self.latent_dims, *(w for ws in self.q_hidden + self.p_hidden for w in ws)]
        if any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be positive integers, got {sizes}")

    @property
    def n_stochastic(self):
        return len(self.latent_dims)

    def to_dict(self):
        return {"x_dim": self.x_dim, "latent_dims": list(self.latent_dims),
                "q_hidden": [list(h) for h in self.q_hidden], "p_hidden": [list(h) for h in self.p_hidden]}

    @classmethod
    def from_dict(cls, d):
        return cls(int(d["x_dim"]), tuple(d["latent_dims"]), tuple(tuple(h) for h in d["q_hidden"]),
                   tuple(tuple(h) for h in d["p_hidden"]))


#: The two architectures of the paper, appendix C.
PRESETS = {
    # 784 -200-200-> h1(50);  h1 -200-200-> 784
    "one-layer": Architecture(784, (50,), ((200, 200),), ((200, 200),)),
    # 784 -200-200-> h1(100) -100-100-> h2(50);  h2 -100-100-> h1 -200-200-> 784
    "two-layer": Architecture(784, (100, 50), ((200, 200), (100, 100)), ((200, 200), (100, 100))),
}


def get_architecture(name):
    """A preset by name (``"one-layer"``, ``"two-layer"``, or ``1`` / ``2``), or an Architecture as is."""
    if isinstance(name, Architecture):
        return name
    aliases = {1: "one-layer", 2: "two-layer", "1": "one-layer", "2": "two-layer"}
    key = aliases.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(PRESETS)} or 1 / 2")
    return PRESETS[key]


def network_names(arch):
    """Networks in their fixed order: recognition bottom-up, then generative top-down."""
    L = arch.n_stochastic
    return ([f"q_h{l}" for l in range(1, L + 1)]
            + [f"p_h{l}" for l in range(L - 1, 0, -1)] + ["p_x"])


def init_params(arch, rng, dtype=np.float64, x_mean=None):
    """Glorot-uniform weights, zero biases, layers initialized in :func:`network_names` order from ``rng``.

    ``x_mean`` (the training set's mean pixel, shape ``(D,)``) sets the output bias to
    ``logit(clip(x_mean, 0.001, 0.999))`` as the authors' code does.
    """
    arch = get_architecture(arch)
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    dims = (arch.x_dim,) + tuple(arch.latent_dims)  # dims[l]: width of h_l (h_0 = x)
    params = {}
    for name in network_names(arch):
        l = int(name[3:]) if name != "p_x" else 0
        if name.startswith("q_"):  # q(h_l | h_{l-1}) with h_0 = x
            d = dims[l]
            params[name] = init_mlp(rng, dims[l - 1], arch.q_hidden[l - 1],
                                    {"mu": d, "log_sigma": d}, dtype)
        elif name == "p_x":  # p(x | h_1)
            params[name] = init_mlp(rng, dims[1], arch.p_hidden[0], {"logits": arch.x_dim}, dtype)
        else:  # p(h_l | h_{l+1})
            d = dims[l]
            params[name] = init_mlp(rng, dims[l + 1], arch.p_hidden[l], {"mu": d, "log_sigma": d}, dtype)
    if x_mean is not None:
        x_mean = np.asarray(x_mean, dtype=np.float64)
        if x_mean.shape != (arch.x_dim,):
            raise ValueError(f"x_mean must have shape ({arch.x_dim},), got {x_mean.shape}")
        p = np.clip(x_mean, 0.001, 0.999)
        params["p_x"]["logits"]["b"] = np.log(p / (1 - p)).astype(dtype)
    return params


def architecture_of(params):
    """Read the Architecture back from a parameter tree's shapes (every shape checked, values not)."""
    return Architecture(*model_structure(params, check_values=False)[1])


def sample_eps(rng, params_or_arch, k, batch, dtype=None):
    """Standard normal noise ``[(k, batch, d_1), ..., (k, batch, d_L)]`` from the generator ``rng``.

    ``dtype`` defaults to the parameters' (or float64 for an architecture); it must be float32 or float64.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    for name, n in (("the number of samples k", k), ("batch", batch)):
        if (isinstance(n, bool) or not isinstance(n, (int, np.integer, float)) or not np.isfinite(n)
                or int(n) != n or n < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    if isinstance(params_or_arch, dict):
        params_dtype, sizes = model_structure(params_or_arch, check_values=False)
        arch = Architecture(*sizes)
        dtype = dtype or params_dtype
    else:
        arch = get_architecture(params_or_arch)
    dtype = np.dtype(dtype or np.float64)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64 (the noise is Gaussian), got {dtype}")
    return [rng.standard_normal((int(k), int(batch), d)).astype(dtype) for d in arch.latent_dims]


# ---------------------------------------------------------------------------------------------
# the model


def gaussian_layer(net, a):
    r"""``(mu, log_sigma)`` of a diagonal-Gaussian layer: its tanh MLP on the input ``a``, then two linear heads.

    .. math:: t = \mathrm{MLP}(a), \qquad \mu = t W_\mu + b_\mu, \qquad \log\sigma = t W_{\log\sigma} + b_{\log\sigma}

    The same function for every Gaussian of the paper: ``q(h_1|x)``, ``q(h_{l+1}|h_l)`` and ``p(h_l|h_{l+1})``.
    """
    t = tanh_mlp(net, a)
    return dense(net["mu"], t), dense(net["log_sigma"], t)


def sample_posterior(params, x, eps):
    r"""Reparameterized samples from :math:`q_\phi(h^1, ..., h^L \mid x)` (paper section 2).

    .. math::
        h^1 = \mu^1(x) + \sigma^1(x) \odot \epsilon^1, \qquad
        h^{l+1} = \mu^{l+1}(h^l) + \sigma^{l+1}(h^l) \odot \epsilon^{l+1}

    The network of ``q(h_1|x)`` runs once per example ``(batch, D) -> (batch, d_1)`` and is
    broadcast over the k samples; deeper layers run on all ``k * batch`` samples.
    Returns ``(h, q_stats)``: the latents ``[(k, batch, d_l)]`` and the ``(mu, log_sigma)`` of each layer.
    """
    h, q_stats, below = [], [], x
    for l in range(1, len(eps) + 1):
        mu, log_sigma = gaussian_layer(params[f"q_h{l}"], below)  # (batch, d) for l = 1, else (k, batch, d)
        below = mu + anp.exp(log_sigma) * eps[l - 1]  # (k, batch, d_l)
        h.append(below)
        q_stats.append((mu, log_sigma))
    return h, q_stats


def recognition_stats(params, x, h):
    """``[(mu, log_sigma)]`` of ``q(h_1|x)``, ``q(h_2|h_1)``, ... at given latents ``h`` (only the ``q_*`` networks are used)."""
    below, stats = x, []
    for l in range(1, len(h) + 1):
        stats.append(gaussian_layer(params[f"q_h{l}"], below))
        below = h[l - 1]
    return stats


def generative_log_density_terms(params, x, h):
    r"""The terms of :math:`\log p_\theta(x, h)`: ``{"log_p_x_given_h1", "log_p_h{l}_given_h{l+1}", "log_p_h{L}"}``, each ``(k, batch)``."""
    L = len(h)
    logits = dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h[0]))  # (k, batch, D)
    terms = {"log_p_x_given_h1": bernoulli_log_likelihood(x, logits)}
    for l in range(1, L):
        mu, log_sigma = gaussian_layer(params[f"p_h{l}"], h[l])
        terms[f"log_p_h{l}_given_h{l + 1}"] = gaussian_log_density(h[l - 1], mu, log_sigma)
    terms[f"log_p_h{L}"] = standard_normal_log_density(h[L - 1])
    return terms


def recognition_log_density_terms(h, q_stats):
    r"""The terms of :math:`\log q_\phi(h|x)`: ``{"log_q_h1_given_x", "log_q_h{l+1}_given_h{l}"}``, each ``(k, batch)``,
    from the latents and the ``(mu, log_sigma)`` of each layer (:func:`sample_posterior`, :func:`recognition_stats`)."""
    return {f"log_q_h{l}_given_{'x' if l == 1 else f'h{l - 1}'}": gaussian_log_density(h[l - 1], mu, log_sigma)
            for l, (mu, log_sigma) in enumerate(q_stats, start=1)}


def generative_log_density(params, x, h):
    r""":math:`\log p_\theta(x, h) = \log p(x|h^1) + \sum_{l<L} \log p(h^l|h^{l+1}) + \log p(h^L)`, shape ``(k, batch)``."""
    return sum(generative_log_density_terms(params, x, h).values())


def recognition_log_density(params, x, h):
    r""":math:`\log q_\phi(h|x) = \log q(h^1|x) + \sum_{l<L} \log q(h^{l+1}|h^l)` at given latents ``h``, shape ``(k, batch)``.

    Only the ``q_*`` networks of ``params`` are used. With stopped latents this is what RWS's wake-phi step ascends.
    """
    return sum(recognition_log_density_terms(h, recognition_stats(params, x, h)).values())


def log_weight_terms(params, x, eps, log_q_params=None, validate=True):
    r"""All the parts of the log importance weights for the samples given by ``eps`` (paper section 3).

    .. math::
        \log w = \underbrace{\log p(x|h^1) + \sum_{l<L} \log p(h^l|h^{l+1}) + \log p(h^L)}_{\log p(x, h)}
                 - \underbrace{\Big[\log q(h^1|x) + \sum_{l<L} \log q(h^{l+1}|h^l)\Big]}_{\log q(h|x)}

    Returns a dict with

    - ``"h"``: the latents ``[h_1, ..., h_L]``, each ``(k, batch, d_l)``;
    - ``"terms"``: each log density, ``(k, batch)``, keyed ``log_p_x_given_h1``,
      ``log_p_h{l}_given_h{l+1}``, ``log_p_h{L}`` (the prior), ``log_q_h1_given_x``,
      ``log_q_h{l+1}_given_h{l}``;
    - ``"log_p"``, ``"log_q"``: :math:`\log p(x, h)` and :math:`\log q(h|x)`, ``(k, batch)``;
    - ``"log_w"``: their difference, ``(k, batch)``.

    ``log_q_params``, if given, is a parameter tree whose ``q_*`` networks evaluate the
    ``log q`` terms at the sampled latents, while the latents themselves are still sampled with
    ``params``. Passing a stopped (constant) copy of phi there gives the path-derivative
    estimators (STL, DReG): the score term drops out, the path through every ``h`` stays.
    ``validate=False`` skips the input checks (:mod:`iwae_np.validation`), for callers that made them.
    """
    if validate:
        x = validate_inputs(params, x, eps)
    h, q_stats = sample_posterior(params, x, eps)  # the recognition networks run once, for sampling and log q
    if log_q_params is not None:
        q_stats = recognition_stats(log_q_params, x, h)
    p_terms = generative_log_density_terms(params, x, h)
    q_terms = recognition_log_density_terms(h, q_stats)
    log_p, log_q = sum(p_terms.values()), sum(q_terms.values())
    log_w = log_p - log_q
    if validate:
        check_log_weights_finite(log_w, {**p_terms, **q_terms}, q_stats)
    return {"h": h, "terms": {**p_terms, **q_terms}, "log_p": log_p, "log_q": log_q, "log_w": log_w}


def log_importance_weights(params, x, eps, log_q_params=None, validate=True):
    r"""``log w_i = log p(x, h_i) - log q(h_i | x)`` with :math:`h_i` from ``eps``, shape ``(k, batch)`` (paper section 3)."""
    return log_weight_terms(params, x, eps, log_q_params, validate)["log_w"]


def sample_generative(params, rng, n):
    r"""Ancestral samples from :math:`p_\theta`: ``h_L ~ N(0, I)``, down to ``x ~ Bernoulli(sigmoid(logits))``.

    Returns a dict: ``"h"`` the latents ``[h_1, ..., h_L]`` each ``(n, d_l)``, ``"x_mean"`` the
    pixel probabilities ``(n, D)`` (what one draws as a picture), ``"x"`` a binary sample.
    """
    dtype, sizes = model_structure(params)
    arch = Architecture(*sizes)
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    L = arch.n_stochastic
    h = [None] * L
    h[L - 1] = rng.standard_normal((n, arch.latent_dims[-1])).astype(dtype)
    for l in range(L - 1, 0, -1):  # h_l ~ p(h_l | h_{l+1})
        mu, log_sigma = gaussian_layer(params[f"p_h{l}"], h[l])
        h[l - 1] = mu + np.exp(log_sigma) * rng.standard_normal(mu.shape).astype(dtype)
    x_mean = sigmoid(dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h[0])))
    x = (rng.uniform(size=x_mean.shape) < x_mean).astype(dtype)
    return {"h": h, "x_mean": x_mean, "x": x}
