"""Input checks of the model's public functions: bad input gives a ``ValueError`` that names the problem.

Kept apart from :mod:`iwae_np.model` so that the model reads as the paper. Every check here looks at
values only (``getval`` unboxes autograd's tracer), so nothing here is differentiated.
"""
import numpy as np
from autograd.tracer import getval

from .tree import flatten_tree, tree_dtype

__all__ = ["concrete", "validate_params", "model_structure", "validate_x", "validate_eps", "validate_inputs",
           "NonFiniteLogWeightError", "check_log_weights_finite"]


def concrete(tree):
    """The arrays behind a tree autograd is tracing, boxed as a whole, per network, per layer or per array."""
    tree = getval(tree)
    if isinstance(tree, dict):
        return {key: concrete(value) for key, value in tree.items()}
    return tree


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


def _sizes(params):
    """``(x_dim, latent_dims, q_hidden, p_hidden)`` of a parameter tree, after checking its networks, layers and shapes."""
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

    return (x_dim, latent, tuple(hidden(f"q_h{l}") for l in range(1, L + 1)),
            (hidden("p_x"),) + tuple(hidden(f"p_h{l}") for l in range(1, L)))


def model_structure(params, check_values=True):
    """``(dtype, (x_dim, latent_dims, q_hidden, p_hidden))`` of a parameter tree, every shape checked.

    With ``check_values``, every array must be finite (the message names the parameter).
    :func:`iwae_np.model.architecture_of` makes an Architecture of the sizes.
    """
    params = concrete(params)  # under autograd the tree arrives boxed
    sizes = _sizes(params)
    flat = {name: getval(v) for name, v in flatten_tree(params).items()}
    dtype = tree_dtype(list(flat.values()))
    if check_values:
        for name, value in flat.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"parameter {name!r} has non-finite values "
                                 f"({int(np.sum(~np.isfinite(value)))} of {np.size(value)})")
    return dtype, sizes


def validate_params(params, check_values=True):
    """Check the tree has the model's networks, layers and heads with consistent shapes, and one float dtype;
    with ``check_values``, that every array is finite. Returns the dtype."""
    return model_structure(params, check_values)[0]


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


def validate_inputs(params, x, eps):
    """:func:`validate_params`, :func:`validate_x` and :func:`validate_eps` for one computation; returns ``x`` as the parameters' dtype."""
    dtype, (x_dim, latent_dims, _, _) = model_structure(params)
    x = validate_x(x, x_dim, dtype)
    validate_eps(eps, latent_dims, x.shape[0], dtype)
    return x


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
