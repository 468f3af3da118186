r"""The fast engine's autograd primitives: closed-form vector-Jacobian products, for speed.

Differentiating the model op by op costs autograd a node, a closure and a temporary per numpy
call (about 9 microseconds each, plus the pass over the data), and its generic VJPs for ``dot`` and
broadcasting copy and transpose. The building blocks below are single primitives instead: the
forward is the equation, the VJP is its closed form, derived in the comment above it. They are
exact (no approximation enters either pass), keep the dtype of their inputs (float32 stays
float32), and are checked against central differences in ``tests/test_primitives.py``.

- :func:`affine`: :math:`y = x W + b` for a layer dict ``{"W", "b"}``
- :func:`tanh_affine`: :math:`y = \tanh(x W + b)`
- :func:`bernoulli_logit_log_likelihood`: :math:`\sum_j x_j l_j - \operatorname{softplus}(l_j)`
- :func:`diagonal_gaussian_log_density`: :math:`-\frac12 \sum_j [\log 2\pi + 2 s_j + ((h_j - \mu_j) e^{-s_j})^2]`
- :func:`standard_normal_log_density`: :math:`-\frac12 \sum_j [\log 2\pi + h_j^2]`
- :func:`reparameterize`: :math:`h = \mu + e^{s} \odot \epsilon`
- :func:`mlp`: a tanh MLP with its linear heads, one node per network
- :func:`subtree_view`, :func:`tree_views`: the parameter tree as views into one flat buffer

:mod:`iwae_np.fast.model` computes the log weights from these. Each equals the definition's function
(:func:`iwae_np.networks.dense`, :func:`iwae_np.densities.gaussian_log_density`, ...) to rounding,
values and gradients: ``tests/test_fast_engine.py``.
Inside a primitive, arrays are plain numpy arrays, so the forward and the VJP may reuse their own
temporaries in place (``out=``); nothing outside them is modified, and no data is kept between calls.
Large work arrays come from :mod:`iwae_np.fast.buffers` (reused once nothing refers to them; fresh
full-size temporaries page-fault). The Bernoulli term, the one elementwise computation over
``(k, batch, 784)``, runs in cache-sized blocks and, for large arrays, on two threads: the second
half on a helper thread started on first use, one per process (a forked child starts its own), so
that the numbers do not depend on the split (:func:`in_two_halves`).
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import autograd.builtins
import numpy as np
from autograd.extend import Box, SparseObject, defvjp, defvjp_argnums, primitive, vspace

from ..densities import LOG_2PI
from .buffers import empty

__all__ = ["affine", "tanh_affine", "bernoulli_logit_log_likelihood", "diagonal_gaussian_log_density",
           "reparameterize", "standard_normal_log_density", "layer_dict", "subtree_view", "tree_views", "mlp", "unbroadcast",
           "in_two_halves"]

def layer_dict(layer):
    """``layer`` (a dict, or a dict of dicts) as one differentiable value: traced arrays inside become one traced dict.

    The primitives take a layer dict (or a network's dict of layers) whole (one node, one gradient
    dict) rather than indexing it under autograd (a node per key and a zero-filled copy of the dict per
    index). A plain dict that holds traced values (``{"W": W, "b": b}`` built inside a differentiated
    function) is packed with ``autograd.builtins.dict``, level by level, so the primitive sees it.
    """
    if isinstance(layer, Box) or not isinstance(layer, dict):
        return layer
    packed = {key: layer_dict(value) for key, value in layer.items()}
    if any(isinstance(value, Box) for value in packed.values()):
        return autograd.builtins.dict(packed)
    return layer


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


@primitive
def subtree_view(flat, spec, grad_out=None):
    """A sub-tree of the parameters (a network, or a layer) as named views into the flat parameter buffer.

    ``spec`` is ``((path, offset, size, shape), ...)`` (a :class:`iwae_np.tree.FlatLayout`'s ``units``):
    the array at ``path`` inside the sub-tree is ``flat[offset:offset + size].reshape(shape)``.
    One autograd node per sub-tree: the dict reaches the primitives whole, and the gradient of
    the flat buffer is assembled by adding each array's gradient into its slice. ``grad_out``, if
    given, is a zeroed buffer shaped like ``flat`` that receives the gradient (instead of a fresh one).
    """
    tree = {}
    for (*path, key), o, n, shape in spec:
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[key] = flat[o:o + n].reshape(shape)
    return tree


# VJP: the view is a selection, so its transpose puts each array's gradient back into its slice of a
# zero buffer: a SparseObject, which autograd applies to the gradient of flat being accumulated (its
# own zeros the first time, then what the previous sub-tree returned), so the whole tree's gradient
# is one buffer filled in place, instead of a zero-filled copy of the tree per index into it.
# With grad_out, that buffer is grad_out (autograd's first zeros are left untouched).
def _subtree_view_vjp(ans, flat, spec, grad_out=None):
    def vjp(g):
        def add_into(buffer):
            buffer = buffer if grad_out is None else grad_out
            for path, o, n, _ in spec:
                part = buffer[o:o + n]
                part += np.ravel(_get(g, path))
            return buffer
        return SparseObject(vspace(flat), add_into)
    return vjp


defvjp(subtree_view, _subtree_view_vjp)


def tree_views(flat, layout, grad_out=None):
    """The parameter tree as views into ``flat`` (traced or not), one :func:`subtree_view` per unit of ``layout``.

    ``layout`` is the :class:`iwae_np.tree.FlatLayout` of the tree; its ``units`` must not be None.
    Differentiating a function of this tree with respect to ``flat`` gives the gradient of the whole
    tree as one flat array in the layout's order (``grad_out``, if given: a zeroed buffer like ``flat``).
    """
    tree = {}
    for root, spec in layout.units:
        if not root:  # the tree itself is one unit
            return subtree_view(flat, spec, grad_out)
        node = tree
        for key in root[:-1]:
            node = node.setdefault(key, {})
        node[root[-1]] = subtree_view(flat, spec, grad_out)
    return tree


def unbroadcast(g, shape):
    """Sum ``g`` over the axes that broadcasting added or stretched, so it has ``shape`` (the VJP of broadcasting)."""
    g = np.asarray(g)
    if g.shape == tuple(shape):
        return g
    g = np.sum(g, axis=tuple(range(g.ndim - len(shape))))  # leading axes that broadcasting added
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return np.sum(g, axis=stretched, keepdims=True) if stretched else g


def _rows(a):
    # (..., n) -> (rows, n): a view when a is contiguous, so the samples k and examples batch go
    # through one matrix product
    a = np.asarray(a)
    return a.reshape(-1, a.shape[-1])


def _affine_forward(layer, x):
    W, b = layer["W"], layer["b"]
    rows = _rows(x)
    y = np.matmul(rows, W, out=empty((rows.shape[0], W.shape[1]), np.result_type(rows, W)))  # (rows, n_out)
    if y.dtype == np.result_type(y, b):
        y += b  # in place on our own temporary
    else:
        y = y + b
    return y.reshape(np.shape(x)[:-1] + (W.shape[1],))


def affine(layer, x):
    r"""Affine map :math:`y = x W + b` over the last axis of ``x``; ``layer = {"W": (n_in, n_out), "b": (n_out,)}``.

    ``x (..., n_in) -> y (..., n_out)``: the leading axes are folded into rows of one product.
    """
    return _affine(layer_dict(layer), x)


def tanh_affine(layer, x):
    r"""A tanh layer :math:`y = \tanh(x W + b)` over the last axis of ``x``."""
    return _tanh_affine(layer_dict(layer), x)


@primitive
def _affine(layer, x):
    return _affine_forward(layer, x)


@primitive
def _tanh_affine(layer, x):
    y = _affine_forward(layer, x)
    return np.tanh(y, out=y)


# VJP of y = x W + b with upstream gradient G = dL/dy, rows r, (rows, n_out):
#   dL/dW_ij = sum_r x_ri G_rj          ->  dW = x^T G      (rows folded: k and batch together)
#   dL/db_j  = sum_r G_rj               ->  db = G summed over rows
#   dL/dx_ri = sum_j G_rj W_ij          ->  dx = G W^T
# BLAS reads the transposes in place: no copies, unlike the generic tensordot VJP.
def _affine_backward(argnums, G, layer, x):
    grads = []
    for argnum in argnums:
        if argnum == 0:
            grad = {} if len(layer) == 2 else {key: np.zeros_like(v) for key, v in layer.items()}  # unused keys: 0
            rows = _rows(x)
            grad["W"] = np.matmul(rows.T, G, out=empty(layer["W"].shape, np.result_type(rows, G)))
            grad["b"] = unbroadcast(G.sum(axis=0), np.shape(layer["b"]))
            grads.append(grad)
        else:
            W = layer["W"]
            grads.append(np.matmul(G, W.T, out=empty((G.shape[0], W.shape[0]), np.result_type(G, W)))
                         .reshape(np.shape(x)))
    return grads


def _cotangent(g, ans):
    # The gradient flowing into an output has the output's dtype. autograd's own VJPs do not always
    # keep it (the VJP of anp.mean turns float32 into float64), and a float64 cotangent would turn
    # every product below it into a slow mixed-dtype one: cast it back, once, at the primitive.
    return np.asarray(g, dtype=np.result_type(ans))


def _affine_vjp(argnums, ans, args, kwargs):
    layer, x = args
    return lambda g: _affine_backward(argnums, _rows(_cotangent(g, ans)), layer, x)


# VJP of y = tanh(a), a = x W + b: dtanh(a)/da = 1 - tanh(a)^2 = 1 - y^2, so the upstream
# gradient of the affine part is G = g * (1 - y^2), computed from the output y alone (no need to
# keep a). Then as for affine.
def _tanh_affine_vjp(argnums, ans, args, kwargs):
    layer, x = args

    def vjp(g):
        G = np.multiply(ans, ans, out=empty(ans.shape, ans.dtype))
        np.subtract(1, G, out=G)  # 1 - y^2
        G *= g
        return _affine_backward(argnums, _rows(G), layer, x)

    return vjp


defvjp_argnums(_affine, _affine_vjp)
defvjp_argnums(_tanh_affine, _tanh_affine_vjp)


def mlp(net, x, heads):
    r"""A network of the model as one autograd node: a tanh MLP, then linear heads (paper appendix C).

    .. math::
        a_0 = x, \qquad a_i = \tanh(a_{i-1} W_i + b_i) \ \ (\texttt{hidden\_0}, \texttt{hidden\_1}, \dots), \qquad
        y_j = a_n W_j + b_j \ \ \text{for each head } j

    ``net`` is the network's dict of layers, ``heads`` the names of its heads (``("mu", "log_sigma")``
    or ``("logits",)``). Returns a tuple, one array ``(..., n_out_j)`` per head. The forward is the
    layers' own (:func:`tanh_affine`, :func:`affine`), so the numbers are those of
    :func:`iwae_np.networks.tanh_mlp` and :func:`iwae_np.networks.dense` to rounding; the VJP is backpropagation
    through the same layers' closed forms, in one node instead of one per layer (and per head).
    """
    out = _mlp(layer_dict(net), x, tuple(heads))
    return tuple(out[j] for j in range(len(heads)))


def _hidden_names(net):
    names, i = [], 0
    while f"hidden_{i}" in net:
        names.append(f"hidden_{i}")
        i += 1
    return names


@primitive
def _mlp(net, x, heads):
    # the heads' outputs, then the hidden activations a_1 .. a_n (outputs only so that the VJP has them:
    # mlp() never hands them out, so their cotangents are zero and the VJP does not read them)
    activations, a = [], x
    for name in _hidden_names(net):
        a = _affine_forward(net[name], a)
        np.tanh(a, out=a)
        activations.append(a)
    return tuple(_affine_forward(net[head], a) for head in heads) + tuple(activations)


# VJP: backpropagation through the layers, each step the closed form of its primitive.
#   heads:  G_top = sum_j g_j W_j^T,   dW_j = a_n^T g_j,   db_j = sum_rows g_j
#   hidden, i = n .. 1:  G = G_top * (1 - a_i^2);  dW_i = a_{i-1}^T G,  db_i = sum_rows G;  G_top = G W_i^T
# The input's gradient (the last G W_1^T) only when x is traced (not for the data x).
def _mlp_vjp(argnums, ans, args, kwargs):
    net, x, heads = args
    activations = ans[len(heads):]
    names = _hidden_names(net)

    def vjp(g):
        grad, top = {}, activations[-1] if activations else x
        G_top = None
        for j, head in enumerate(heads):
            wanted = (0, 1) if names or 1 in argnums else (0,)
            grad[head], *rest = _affine_backward(wanted, _rows(_cotangent(g[j], ans[j])), net[head], top)
            if rest:
                G_top = rest[0] if G_top is None else np.add(G_top, rest[0], out=G_top)
        for i in range(len(names) - 1, -1, -1):
            a = activations[i]
            G = np.multiply(a, a, out=empty(a.shape, a.dtype))
            np.subtract(1, G, out=G)  # 1 - a_i^2
            G *= G_top
            below = activations[i - 1] if i > 0 else x
            wanted = (0, 1) if i > 0 or 1 in argnums else (0,)
            grad[names[i]], *rest = _affine_backward(wanted, _rows(G), net[names[i]], below)
            G_top = rest[0] if rest else None
        grad.update({key: _zeros_like_tree(value) for key, value in net.items() if key not in grad})  # unused: 0
        return [grad if argnum == 0 else G_top for argnum in argnums]

    return vjp


def _zeros_like_tree(tree):
    if isinstance(tree, dict):
        return {key: _zeros_like_tree(value) for key, value in tree.items()}
    return np.zeros_like(tree)


defvjp_argnums(_mlp, _mlp_vjp)


def _exp_minus_abs(l, out=None):
    # e^{-|l|}, in (0, 1]: the one exponential both softplus and sigmoid need, never overflowing
    e = np.abs(l, out=out)
    np.negative(e, out=e)
    return np.exp(e, out=e)


#: Elements per block of the blocked elementwise loops below: two float64 scratch arrays of this
#: size (1 MiB) stay in the caches and are reused across blocks, instead of a fresh full-size
#: temporary per operation (each a fresh mapping whose pages fault in: most of the Bernoulli term's
#: time at k = 50 before blocking).
BLOCK_ELEMENTS = 1 << 16

#: Arrays with at least this many elements are split over two threads (numpy releases the GIL in
#: its loops); smaller ones are not worth the hand-off.
PARALLEL_MIN_ELEMENTS = 1 << 18

_helper = None  # (pid, a ThreadPoolExecutor with one thread): started on first use, one per process


def _helper_thread():
    """The executor of this process's helper thread, started on first use.

    Keyed by the process id: a child forked after the helper has run inherits the executor object
    but not its thread (fork copies only the calling thread), so work submitted to it would wait
    forever. The child starts its own helper instead.
    """
    global _helper
    pid = os.getpid()
    if _helper is None or _helper[0] != pid:
        _helper = (pid, ThreadPoolExecutor(1, thread_name_prefix="iwae_np-elementwise"))
    return _helper[1]


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _blocked(fn, shape, dtype, scratch=2):
    """Call ``fn(index, scratch)`` over blocks of axis 0 of ``shape``, on up to two threads.

    ``index`` is a slice of axis 0; ``scratch`` is a tuple of ``scratch`` reusable arrays of the
    block's shape (a thread's own). Blocks take as many rows of axis 0 as fit ``BLOCK_ELEMENTS``
    (at least one). Arrays of at least ``PARALLEL_MIN_ELEMENTS`` elements are split in two halves,
    the second on the helper thread (numpy releases the GIL in its loops) when the process may use
    two CPUs. Every block is computed the same way whatever the split, so the results do not depend on it.
    """
    n0, inner = shape[0], math.prod(shape[1:])
    rows = max(1, BLOCK_ELEMENTS // max(inner, 1))
    n_scratch = scratch

    def run(lo, hi):
        m = min(rows, hi - lo)
        arrays = tuple(empty((m,) + tuple(shape[1:]), dtype) for _ in range(n_scratch))
        for i in range(lo, hi, rows):
            j = min(i + rows, hi)
            fn(slice(i, j), tuple(a[:j - i] for a in arrays))

    in_two_halves(run, n0, parallel=n0 * inner >= PARALLEL_MIN_ELEMENTS)


def in_two_halves(run, n, parallel=True):
    """``run(0, n)``, or ``run(0, n // 2)`` here and ``run(n // 2, n)`` on the helper thread at the same time.

    In two halves when ``parallel``, ``n >= 2`` and the process may use two CPUs (numpy releases the
    GIL in its loops, so the halves run at once). ``run`` must compute each index the same way
    whatever the range, so the results do not depend on the split.
    """
    if parallel and n >= 2 and _usable_cpus() >= 2:
        half = n // 2
        other = _helper_thread().submit(run, half, n)
        try:
            run(0, half)
        finally:
            other.result()  # never return while the helper still writes
    else:
        run(0, n)


def _part(a, index, ndim):
    # the block of a broadcast argument: sliced where it has the full leading axis, whole otherwise
    return a[index] if np.ndim(a) == ndim and np.shape(a)[0] != 1 else a


@primitive
def bernoulli_logit_log_likelihood(x, logits):
    r"""Bernoulli log-likelihood from logits :math:`\sum_j [x_j l_j - \operatorname{softplus}(l_j)]` over the last axis.

    Computed as :math:`\sum_j [(x_j l_j - \max(l_j, 0)) - \log(1 + e^{-|l_j|})]`, the stable softplus
    :math:`\operatorname{softplus}(l) = \max(l, 0) + \operatorname{log1p}(e^{-|l|})` split so that the large
    parts cancel first (``x = 1, l = 40`` gives ``-log1p(e^-40)`` exactly). ``x (batch, D)`` broadcasts
    against ``logits (k, batch, D)``. Evaluated block by block over the leading axis (:func:`_blocked`).
    """
    shape = result_shape = np.broadcast_shapes(np.shape(x), np.shape(logits))
    dtype = np.result_type(x, logits)
    if len(shape) < 2:  # one vector: as one row
        shape, x, logits = (1,) + shape, np.reshape(x, (1, -1)), np.reshape(logits, (1, -1))
    out = np.empty(shape[:-1], dtype)

    def block(i, scratch):
        xs, ls = _part(x, i, len(shape)), _part(logits, i, len(shape))
        t, e = scratch[0], scratch[1]
        np.multiply(xs, ls, out=t)  # x l
        t -= np.maximum(ls, 0, out=e)  # x l - max(l, 0)
        t -= np.log1p(_exp_minus_abs(ls, out=e), out=e)  # ... - log1p(e^{-|l|})
        np.sum(t, axis=-1, out=out[i])

    _blocked(block, shape, dtype)
    return out.reshape(result_shape[:-1])


# VJP: d/dl [x l - softplus(l)] = x - softplus'(l) = x - sigma(l);  d/dx = l.
# Summed over the last axis, so the upstream gradient g (...) multiplies along it: g[..., None].
# sigma(l) = 1 / (1 + e^{-l}), as scipy's expit: for l -> -inf, e^{-l} overflows to inf and sigma to
# 0 (the true value is below the smallest normal number there); elsewhere every step is correctly
# rounded, so sigma keeps full relative precision even where it is ~1e-300. (A masked select
# between 1/(1+e^{-|l|}) and e^{-|l|}/(1+e^{-|l|}) gives the same numbers 4x slower: np.copyto
# with where= is a slow loop.)
def _bernoulli_vjp(argnums, ans, args, kwargs):
    x, logits = args

    def vjp(g):
        g = np.expand_dims(_cotangent(g, ans), -1)
        grads = []
        for argnum in argnums:
            if argnum == 1 and np.shape(logits) != np.broadcast_shapes(np.shape(x), np.shape(logits)):
                # logits broadcast against a larger x: the plain formula, summed back to their shape
                with np.errstate(over="ignore"):
                    sigma = 1 / (1 + np.exp(-logits))
                grads.append(unbroadcast(g * (x - sigma), np.shape(logits)))
            elif argnum == 1:
                shape = np.shape(logits)
                x_, l_, g_ = (x, logits, g) if len(shape) >= 2 else (np.reshape(x, (1, -1)),
                                                                    np.reshape(logits, (1, -1)), np.reshape(g, (1, 1)))
                G = empty(np.shape(l_), np.result_type(x, logits))

                def block(i, scratch):
                    ls = _part(l_, i, l_.ndim)
                    e = scratch[0]
                    np.negative(ls, out=e)
                    with np.errstate(over="ignore"):
                        np.exp(e, out=e)  # e^{-l}, inf for l < -88 (float32) / -709 (float64)
                    np.add(e, 1, out=e)
                    np.reciprocal(e, out=e)  # sigma(l)
                    Gi = G[i]
                    np.subtract(_part(x_, i, l_.ndim), e, out=Gi)  # x - sigma(l)
                    Gi *= _part(g_, i, l_.ndim)

                _blocked(block, np.shape(l_), G.dtype)
                grads.append(G.reshape(shape))
            else:
                grads.append(unbroadcast(g * logits, np.shape(x)))
        return grads

    return vjp


defvjp_argnums(bernoulli_logit_log_likelihood, _bernoulli_vjp)


@primitive
def diagonal_gaussian_log_density(h, mu, log_sigma):
    r"""Diagonal Gaussian :math:`-\frac12 \sum_j [\log 2\pi + 2 s_j + z_j^2]`, :math:`z = (h - \mu) e^{-s}`, :math:`s = \log\sigma`.

    Summed over the last axis; the arguments broadcast (``h (k, batch, d)`` against ``mu, log_sigma (batch, d)``).
    """
    z = (h - mu) * np.exp(-log_sigma)  # (..., d); exp(-log sigma) rather than a division by sigma
    return -0.5 * np.sum(LOG_2PI + 2.0 * log_sigma + z * z, axis=-1)


# VJP, with z = (h - mu) e^{-s} and f = -1/2 sum_j [log 2pi + 2 s_j + z_j^2]:
#   df/dh  = -z dz/dh = -z e^{-s}
#   df/dmu = -z dz/dmu = +z e^{-s}
#   df/ds  = -1 - z dz/ds = -1 + z^2        (dz/ds = -z)
# each times g[..., None], summed back over the axes broadcasting stretched.
def _gaussian_vjp(argnums, ans, args, kwargs):
    h, mu, log_sigma = args

    def vjp(g):
        g = np.expand_dims(_cotangent(g, ans), -1)
        inv_sigma = np.exp(-log_sigma)
        z = (h - mu) * inv_sigma
        grads = []
        for argnum in argnums:
            if argnum == 0:
                grads.append(unbroadcast(-g * z * inv_sigma, np.shape(h)))
            elif argnum == 1:
                grads.append(unbroadcast(g * z * inv_sigma, np.shape(mu)))
            else:
                grads.append(unbroadcast(g * (z * z - 1), np.shape(log_sigma)))
        return grads

    return vjp


defvjp_argnums(diagonal_gaussian_log_density, _gaussian_vjp)


@primitive
def standard_normal_log_density(h):
    r"""The standard normal :math:`\log \mathcal N(h; 0, I) = -\frac12 \sum_j [\log 2\pi + h_j^2]`, summed over the last axis."""
    return -0.5 * np.sum(LOG_2PI + h * h, axis=-1)


# VJP: d/dh_j of -1/2 (log 2pi + h_j^2) is -h_j, times g[..., None].
defvjp(standard_normal_log_density, lambda ans, h: lambda g: -(np.expand_dims(_cotangent(g, ans), -1) * h))


@primitive
def reparameterize(mu, log_sigma, eps):
    r"""The reparameterized sample :math:`h = \mu + \sigma \odot \epsilon`, :math:`\sigma = e^{\log\sigma}` (paper section 2).

    ``mu, log_sigma (batch, d)`` or ``(k, batch, d)`` broadcast against ``eps (k, batch, d)``.
    """
    return mu + np.exp(log_sigma) * eps


# VJP, with sigma = e^s: dh/dmu = 1, dh/ds = sigma eps, dh/deps = sigma; the upstream gradient g is
# summed back over the axes broadcasting stretched (the k samples, for mu and s of q(h_1|x)).
# d s is computed as (sum over k of g eps) * sigma, the order autograd's own exp, multiply and add
# VJPs take, so the numbers are the same as differentiating the formula op by op.
def _reparameterize_vjp(argnums, ans, args, kwargs):
    mu, log_sigma, eps = args

    def vjp(g):
        g = _cotangent(g, ans)
        sigma = np.exp(log_sigma)
        grads = []
        for argnum in argnums:
            if argnum == 0:
                grads.append(unbroadcast(g, np.shape(mu)))
            elif argnum == 1:
                grads.append(unbroadcast(g * eps, np.shape(sigma)) * sigma)
            else:
                grads.append(unbroadcast(g * sigma, np.shape(eps)))
        return grads

    return vjp


defvjp_argnums(reparameterize, _reparameterize_vjp)
