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

Shapes: ``x (batch, D)``; noise ``eps[l] (k, batch, d_{l+1})``, one array per stochastic
layer; latents ``h[l] (k, batch, d_{l+1})``; log weights ``(k, batch)``.
"""
from dataclasses import dataclass

import numpy as np
from autograd.tracer import getval

from .densities import bernoulli_log_likelihood, gaussian_log_density, standard_normal_log_density
from .networks import dense, init_mlp, tanh_mlp
from .primitives import mlp, reparameterize
from .special import sigmoid
from .tree import all_finite, flatten_tree, tree_dtype

__all__ = ["Architecture", "PRESETS", "get_architecture", "init_params", "architecture_of",
           "sample_eps", "gaussian_layer", "sample_posterior", "recognition_stats",
           "generative_log_density_terms", "recognition_log_density_terms", "generative_log_density",
           "recognition_log_density", "log_weight_terms", "log_importance_weights",
           "sample_generative", "validate_params", "validate_x", "validate_eps", "validate_inputs",
           "checked_structure", "network_names", "NonFiniteLogWeightError", "check_log_weights_finite"]


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
    """Read the Architecture back from a parameter tree's shapes (its structure checked by :func:`validate_params`)."""
    return checked_structure(params)[1]


def _concrete(tree):
    # the arrays behind a tree autograd is tracing, boxed as a whole, per layer or per array
    tree = getval(tree)
    if isinstance(tree, dict):
        return {key: _concrete(value) for key, value in tree.items()}
    return tree


def _named_arrays(tree, prefix="", out=None):
    # [(name, array)] of a parameter tree, unboxed, in one walk (no checks: validate_params does those)
    out = [] if out is None else out
    for key, value in getval(tree).items():
        value = getval(value)
        if isinstance(value, dict):
            _named_arrays(value, f"{prefix}{key}/", out)
        else:
            out.append((f"{prefix}{key}", value))
    return out


#: (names, shapes, dtypes) of a parameter tree -> (dtype, Architecture): the structure of a tree is
#: checked once, not at every step. A cache of results only: a structure it has not seen is checked in full.
_CHECKED_STRUCTURES = {}


def checked_structure(params):
    """``(dtype, Architecture)`` of a parameter tree: :func:`validate_params` without the values, once per structure.

    Raises what :func:`validate_params` raises for a tree that is not a model's parameters.
    """
    return _checked_structure(params)[:2]


def _checked_structure(params):
    # (dtype, arch, arrays): the structure checked once per structure key, the arrays for value checks
    named = None
    if isinstance(getval(params), dict):
        try:
            named = _named_arrays(params)
            key = (tuple(n for n, _ in named), tuple(np.shape(v) for _, v in named),
                   tuple(np.result_type(v) for _, v in named))
        except (TypeError, ValueError, AttributeError):
            named = None
    found = _CHECKED_STRUCTURES.get(key) if named is not None else None
    if found is None:
        concrete = _concrete(params)
        found = _validate(concrete, check_values=False)  # (dtype, Architecture), every shape checked
        if named is not None:
            _CHECKED_STRUCTURES[key] = found
        named = _named_arrays(concrete)
    return found[0], found[1], [v for _, v in named]


def validate_inputs(params, x, eps):
    """:func:`validate_params`, :func:`validate_x` and :func:`validate_eps` for one computation; returns ``x`` as the parameters' dtype.

    The structure of ``params`` is checked once per structure (:func:`checked_structure`); its values,
    ``x`` and ``eps`` at every call (the finiteness of the parameters in one pass over their buffer).
    """
    dtype, arch, arrays = _checked_structure(params)
    if not all_finite(arrays):
        validate_params(_concrete(params))  # names the parameter
    x = validate_x(x, arch.x_dim, dtype)
    validate_eps(eps, arch.latent_dims, x.shape[0], dtype)
    return x


# ---------------------------------------------------------------------------------------------
# input validation: bad input gives a ValueError that names the problem


def _heads(network):
    return ("logits",) if network == "p_x" else ("mu", "log_sigma")


def _shape(a):
    shape = getattr(a, "shape", None)  # arrays and autograd's boxes have one
    return tuple(shape) if shape is not None else np.shape(getval(a))


def _layer_shapes(params, network):
    """``[(layer name, (n_in, n_out))]`` of one network, hidden layers first; ValueError naming what is wrong."""
    net = params[network]
    if not isinstance(net, dict):
        raise ValueError(f"params[{network!r}] must be a dict of layers, got {type(net).__name__}")
    n_hidden = 0
    while f"hidden_{n_hidden}" in net:
        n_hidden += 1
    names = [f"hidden_{i}" for i in range(n_hidden)] + list(_heads(network))
    missing = [name for name in names if name not in net]
    if missing:
        raise ValueError(f"params[{network!r}] has no layer {missing[0]!r} (its layers: {sorted(net)}; "
                         f"a network has hidden_0, hidden_1, ... and the heads {list(_heads(network))})")
    unexpected = sorted(set(net) - set(names))
    if unexpected:
        raise ValueError(f"params[{network!r}] has unexpected layers {unexpected} (expected {names})")
    shapes = []
    for name in names:
        layer = net[name]
        if not isinstance(layer, dict) or len(layer) != 2 or "W" not in layer or "b" not in layer:
            keys = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"params[{network!r}][{name!r}] must be a dict with exactly the arrays 'W' and 'b', "
                             f"got {keys}")
        W, b = _shape(layer["W"]), _shape(layer["b"])
        if len(W) != 2 or b != W[1:] or 0 in W:
            raise ValueError(f"params[{network!r}][{name!r}]: W must be a 2-D (n_in, n_out) array and b an "
                             f"(n_out,) array with n_in, n_out >= 1; got W {W} and b {b}")
        shapes.append((name, W))
    below, width = "the network's input", shapes[0][1][0]  # every head reads the last hidden layer
    for name, (n_in, n_out) in shapes:
        if n_in != width:
            raise ValueError(f"params[{network!r}][{name!r}]['W'] takes {n_in} inputs but {below} gives {width}")
        if name.startswith("hidden_"):
            below, width = repr(name), n_out
    return shapes


def _structure(params):
    """The Architecture of a parameter tree, after checking its networks, layers and every shape."""
    if not isinstance(params, dict) or "p_x" not in params or "q_h1" not in params:
        raise ValueError("params must be a model parameter tree with networks 'q_h1' and 'p_x' "
                         "(see iwae_np.model.init_params)")
    L = sum(1 for n in params if n.startswith("q_h"))
    expected = {f"q_h{l}" for l in range(1, L + 1)} | {f"p_h{l}" for l in range(1, L)} | {"p_x"}
    if set(params) != expected:
        raise ValueError(f"params has networks {sorted(params)}, expected {sorted(expected)} "
                         f"for {L} stochastic layer(s)")
    shapes = {net: _layer_shapes(params, net) for net in params}

    def width(net, head):  # output width of a head
        return dict(shapes[net])[head][1]

    def n_in(net):
        return shapes[net][0][1][0]

    latent = tuple(width(f"q_h{l}", "mu") for l in range(1, L + 1))
    x_dim = width("p_x", "logits")
    # what feeds each network, and what each Gaussian network must produce
    inputs = {"q_h1": (x_dim, "x"), "p_x": (latent[0], "h1")}
    inputs.update({f"q_h{l}": (latent[l - 2], f"h{l - 1}") for l in range(2, L + 1)})
    inputs.update({f"p_h{l}": (latent[l], f"h{l + 1}") for l in range(1, L)})
    for net, (d, name) in inputs.items():
        if n_in(net) != d:
            raise ValueError(f"params[{net!r}] takes inputs of width {n_in(net)} but its input {name} has {d} units")
    for net in params:
        if net == "p_x":
            continue
        d = latent[int(net[3:]) - 1]  # q_h{l} and p_h{l} both give h_l
        for head in ("mu", "log_sigma"):
            if width(net, head) != d:
                raise ValueError(f"params[{net!r}][{head!r}] gives {width(net, head)} units, h{net[3:]} has {d}")

    def hidden(net):
        return tuple(W[1] for name, W in shapes[net] if name.startswith("hidden_"))

    return Architecture(x_dim, latent, tuple(hidden(f"q_h{l}") for l in range(1, L + 1)),
                        (hidden("p_x"),) + tuple(hidden(f"p_h{l}") for l in range(1, L)))


def validate_params(params, check_values=True):
    """Check the tree has the model's networks, layers and heads with consistent shapes, and one float dtype;
    with ``check_values``, that every array is finite. Returns the dtype."""
    return _validate(params, check_values)[0]


def _validate(params, check_values=True):
    """:func:`validate_params`, returning ``(dtype, architecture)`` (the shapes are read once)."""
    params = getval(params)  # under autograd the tree arrives as one DictBox
    arch = _structure(params)
    flat = {name: getval(v) for name, v in flatten_tree(params).items()}
    dtype = tree_dtype(list(flat.values()))
    if check_values:
        for name, value in flat.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"parameter {name!r} has non-finite values "
                                 f"({int(np.sum(~np.isfinite(value)))} of {np.size(value)})")
    return dtype, arch


def validate_x(x, x_dim, dtype):
    """``x`` must be a ``(batch, x_dim)`` array of zeros and ones; returned as ``dtype``."""
    x = np.asarray(getval(x))
    if x.ndim != 2 or x.shape[1] != x_dim or x.shape[0] < 1:
        raise ValueError(f"x must have shape (batch, {x_dim}) with batch >= 1, got {x.shape}")
    if not np.all((x == 0) | (x == 1)):
        bad = x[~((x == 0) | (x == 1))].ravel()[:3]
        raise ValueError(f"x must be binary (values in {{0, 1}}); found values such as {bad.tolist()} "
                         "(binarize gray images first, e.g. iwae_np.data.binarize)")
    return x.astype(dtype)


def validate_eps(eps, latent_dims, batch, dtype):
    """``eps`` must be a list with one ``(k, batch, d_l)`` array per stochastic layer, all of one k >= 1."""
    if not isinstance(eps, (list, tuple)) or len(eps) != len(latent_dims):
        raise ValueError(f"eps must be a list of {len(latent_dims)} arrays, one per stochastic layer")
    k = None
    for l, (e, d) in enumerate(zip(eps, latent_dims), start=1):
        e = getval(e)
        if np.ndim(e) != 3 or np.shape(e)[1:] != (batch, d):
            raise ValueError(f"eps[{l - 1}] (noise of h{l}) must have shape (k, {batch}, {d}), got {np.shape(e)}")
        if np.shape(e)[0] < 1:
            raise ValueError(f"the number of samples k must be >= 1, got {np.shape(e)[0]}")
        if k is not None and np.shape(e)[0] != k:
            raise ValueError(f"eps[{l - 1}] has k = {np.shape(e)[0]} samples but eps[0] has {k}")
        k = np.shape(e)[0]
        if np.result_type(e) != dtype:
            raise ValueError(f"eps[{l - 1}] has dtype {np.result_type(e)} but the parameters are {dtype}; "
                             "cast it explicitly (the dtype never changes inside a computation)")
        if not np.all(np.isfinite(e)):
            raise ValueError(f"eps[{l - 1}] has non-finite values")
    return k


def sample_eps(rng, params_or_arch, k, batch, dtype=None):
    """Standard normal noise ``[(k, batch, d_1), ..., (k, batch, d_L)]`` from the generator ``rng``."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    for name, n in (("the number of samples k", k), ("batch", batch)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer, float)) or int(n) != n or n < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    if isinstance(params_or_arch, dict):
        params_dtype, arch = checked_structure(params_or_arch)
        dtype = dtype or params_dtype
    else:
        arch = get_architecture(params_or_arch)
    dtype = np.dtype(dtype or np.float64)
    return [rng.standard_normal((int(k), int(batch), d)).astype(dtype) for d in arch.latent_dims]


# ---------------------------------------------------------------------------------------------
# the model


def gaussian_layer(net, a):
    r"""``(mu, log_sigma)`` of a diagonal-Gaussian layer: its tanh MLP on the input ``a``, then two linear heads.

    .. math:: t = \mathrm{MLP}(a), \qquad \mu = t W_\mu + b_\mu, \qquad \log\sigma = t W_{\log\sigma} + b_{\log\sigma}

    The same function for every Gaussian of the paper: ``q(h_1|x)``, ``q(h_{l+1}|h_l)`` and ``p(h_l|h_{l+1})``.
    """
    return mlp(net, a, ("mu", "log_sigma"))  # one autograd node: tanh_mlp, then dense per head


def sample_posterior(params, x, eps):
    r"""Reparameterized samples from :math:`q_\phi(h_1, ..., h_L \mid x)` (paper section 2.1).

    .. math::
        h_1 = \mu_1(x) + \sigma_1(x) \odot \epsilon_1, \qquad
        h_{l+1} = \mu_{l+1}(h_l) + \sigma_{l+1}(h_l) \odot \epsilon_{l+1}

    The network of ``q(h_1|x)`` runs once per example ``(batch, D) -> (batch, d_1)`` and is
    broadcast over the k samples; deeper layers run on all ``k * batch`` samples in one product.
    Returns ``(h, q_stats)``: the latents ``[(k, batch, d_l)]`` and the ``(mu, log_sigma)`` of each layer.
    """
    L = len(eps)
    h, q_stats, below = [], [], x
    for l in range(1, L + 1):
        mu, log_sigma = gaussian_layer(params[f"q_h{l}"], below)  # (batch, d) for l = 1, else (k, batch, d)
        below = reparameterize(mu, log_sigma, eps[l - 1])  # mu + sigma * eps, (k, batch, d_l)
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
    (logits,) = mlp(params["p_x"], h[0], ("logits",))  # dense(logits layer, tanh_mlp(p_x, h_1))
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


def _total(terms):
    first, *rest = terms.values()
    for term in rest:
        first = first + term
    return first


def generative_log_density(params, x, h):
    r""":math:`\log p_\theta(x, h) = \log p(x|h_1) + \sum_{l<L} \log p(h_l|h_{l+1}) + \log p(h_L)`, shape ``(k, batch)``."""
    return _total(generative_log_density_terms(params, x, h))


def recognition_log_density(params, x, h):
    r""":math:`\log q_\phi(h|x) = \log q(h_1|x) + \sum_{l<L} \log q(h_{l+1}|h_l)` at given latents ``h``, shape ``(k, batch)``.

    Only the ``q_*`` networks of ``params`` are used. With stopped latents this is what RWS's wake-phi step ascends.
    """
    return _total(recognition_log_density_terms(h, recognition_stats(params, x, h)))


def log_weight_terms(params, x, eps, log_q_params=None, validate=True):
    r"""All the parts of the log importance weights for the samples given by ``eps`` (paper section 3).

    .. math::
        \log w = \underbrace{\log p(x|h_1) + \sum_{l<L} \log p(h_l|h_{l+1}) + \log p(h_L)}_{\log p(x, h)}
                 - \underbrace{\log q(h_1|x) - \sum_{l<L} \log q(h_{l+1}|h_l)}_{\log q(h|x)}

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
    """
    if validate:
        x = validate_inputs(params, x, eps)
    h, q_stats = sample_posterior(params, x, eps)  # the recognition networks run once, for sampling and log q
    if log_q_params is not None:
        q_stats = recognition_stats(log_q_params, x, h)
    p_terms = generative_log_density_terms(params, x, h)
    q_terms = recognition_log_density_terms(h, q_stats)
    log_p, log_q = _total(p_terms), _total(q_terms)
    log_w = log_p - log_q
    if validate:
        check_log_weights_finite(log_w, {**p_terms, **q_terms}, q_stats)
    return {"h": h, "terms": {**p_terms, **q_terms}, "log_p": log_p, "log_q": log_q, "log_w": log_w}


class NonFiniteLogWeightError(ValueError):
    """A log importance weight is NaN or infinite: a density under- or overflowed (the message names the term)."""


def check_log_weights_finite(log_w, terms, q_stats):
    r"""Raise :class:`NonFiniteLogWeightError` naming the first non-finite term when ``log_w`` is not finite.

    With finite parameters, data and noise every term of :math:`\log w` is finite in exact arithmetic, so
    a non-finite one means a float overflowed: typically :math:`\sigma = e^{\log\sigma}` so large that
    :math:`h^2` overflows (float32 overflows at 3.4e38, i.e. :math:`|h| > 1.8 \cdot 10^{19}`, which
    :math:`\log\sigma \approx 44` reaches). Left alone it gives :math:`\mathcal L = -\infty` and a
    gradient of exactly zero, which looks like a converged model.
    """
    values = getval(log_w)
    if np.all(np.isfinite(values)):
        return
    name, term = next(((n, getval(t)) for n, t in terms.items() if not np.all(np.isfinite(getval(t)))),
                      ("log_w", values))
    first = np.asarray(term)[~np.isfinite(term)].ravel()[0]
    largest = max(float(np.max(getval(log_sigma))) for _, log_sigma in q_stats)
    raise NonFiniteLogWeightError(
        f"{int(np.sum(~np.isfinite(values)))} of {np.size(values)} log weights are not finite in "
        f"{np.result_type(values)}: {name} is {first}, a density overflowed (the largest log_sigma of q is "
        f"{largest:.3g}). Use float64, a smaller learning rate, or parameters with a smaller log_sigma")


def log_importance_weights(params, x, eps, log_q_params=None, validate=True):
    r"""``log w_i = log p(x, h_i) - log q(h_i | x)`` with :math:`h_i` from ``eps``, shape ``(k, batch)`` (paper section 3)."""
    return log_weight_terms(params, x, eps, log_q_params, validate)["log_w"]


def sample_generative(params, rng, n):
    r"""Ancestral samples from :math:`p_\theta`: ``h_L ~ N(0, I)``, down to ``x ~ Bernoulli(sigmoid(logits))``.

    Returns a dict: ``"h"`` the latents ``[h_1, ..., h_L]`` each ``(n, d_l)``, ``"x_mean"`` the
    pixel probabilities ``(n, D)`` (what one draws as a picture), ``"x"`` a binary sample.
    """
    dtype = validate_params(params)
    arch = architecture_of(params)
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
