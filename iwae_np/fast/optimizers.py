r"""The fast engine's Adam: :func:`iwae_np.optimizers.adam_update` over one flat buffer.

The same state (``{"m": tree, "v": tree, "t": int}``), the same settings and checks. The update is
elementwise, so it runs on the whole tree at once: parameters, gradient and moments are each one flat
buffer behind the named arrays (:func:`iwae_np.fast.flat.pack_tree`), and every line of the update is
one vectorized pass over all parameters instead of one small pass per array.
Trees that are not packed yet (a user's own dict of arrays) are copied into a buffer first; the
trees returned are packed, so the next step takes no copy.
"""
import math

import numpy as np

from ..optimizers import check_adam_settings, check_adam_trees
from ..tree import tree_map
from . import primitives
from .buffers import new_buffer
from .flat import all_finite, pack_tree

__all__ = ["adam_init", "adam_update"]


def adam_init(params):
    """Zero first and second moments shaped like ``params``, step count 0."""
    packed = pack_tree(params)
    if packed is None:  # leaves of several dtypes: one array per leaf
        zeros = lambda p: np.zeros_like(p)
        return {"m": tree_map(zeros, params), "v": tree_map(zeros, params), "t": 0}
    _, layout, _ = packed
    return {"m": layout.views(new_buffer(layout.size, layout.dtype, zero=True)),
            "v": layout.views(new_buffer(layout.size, layout.dtype, zero=True)), "t": 0}


def _adam_arrays(p, g, m, v, lr_t, eps_t, b1, b2, maximize, new=np.empty_like):
    r"""One Adam step on arrays of one shape: returns fresh ``(p, m, v)``, made by ``new(like)``; the inputs are not modified.

    ``maximize`` takes the step on :math:`-g`: the same numbers bit for bit, with the sign folded in
    (``(1 - b1) (-g) = -((1 - b1) g)`` and ``(-g)^2 = g^2`` exactly). Large arrays are updated in
    two halves at once (:func:`iwae_np.fast.primitives.in_two_halves`); every element goes through the
    same operations whatever the split.
    """
    p_new, m_new, v_new = new(p), new(m), new(v)
    arrays = [np.reshape(a, -1) for a in (p, g, m, v, p_new, m_new, v_new)]

    def run(lo, hi):
        p, g, m, v, p_new, m_new, v_new = (a[lo:hi] for a in arrays)
        np.multiply(m, b1, out=m_new)
        g1 = np.multiply(g, 1 - b1, out=p_new)        # p_new as scratch until the last line
        if maximize:
            m_new -= g1                               # m <- beta1 m + (1 - beta1) g, with g = -grads
        else:
            m_new += g1                               # m <- beta1 m + (1 - beta1) g
        g2 = np.multiply(g, g, out=g1)
        g2 *= 1 - b2
        np.multiply(v, b2, out=v_new)
        v_new += g2                                   # v <- beta2 v + (1 - beta2) g^2
        step = np.sqrt(v_new, out=g2)
        step += eps_t
        np.divide(m_new, step, out=step)
        step *= lr_t
        np.subtract(p, step, out=p_new)               # theta <- theta - alpha m_hat / (sqrt(v_hat) + eps)

    primitives.in_two_halves(run, arrays[0].size, parallel=arrays[0].size >= primitives.PARALLEL_MIN_ELEMENTS)
    return p_new, m_new, v_new


def adam_update(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-4, maximize=False):
    r""":func:`iwae_np.optimizers.adam_update` (the same arguments, checks and results, equal to rounding) on flat buffers.

    Computed with Kingma & Ba's equivalent form
    :math:`\theta \leftarrow \theta - \alpha_t m / (\sqrt v + \hat\epsilon)`,
    :math:`\alpha_t = \alpha \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`, :math:`\hat\epsilon = \epsilon \sqrt{1 - \beta_2^t}`,
    on the flat buffer of the whole tree. ``maximize=True`` takes the step of :math:`g = -\text{grads}`, the same
    numbers bit for bit as descending ``-grads``. Returns ``(new_params, new_state)``, trees of views into fresh
    buffers; the inputs are not modified.
    """
    check_adam_settings(lr, b1, b2, eps, state)
    t = int(state["t"]) + 1
    lr, b1, b2, eps = float(lr), float(b1), float(b2), float(eps)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t  # bias corrections
    # m_hat / (sqrt(v_hat) + eps) = (sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2)): Kingma & Ba's
    # section 2 rewrite, the same number with two fewer passes over each array
    lr_t, eps_t = lr * math.sqrt(c2) / c1, eps * math.sqrt(c2)
    packed = [pack_tree(tree) for tree in (params, grads, state["m"], state["v"])]
    layouts = {id(found[1]) for found in packed if found is not None}
    if None in packed or len(layouts) != 1:  # different structures (an error below), or dtypes that share no buffer
        check_adam_trees(params, grads, state)
        new = tree_map(lambda *a: _adam_arrays(*a, lr_t, eps_t, b1, b2, maximize), params, grads, state["m"], state["v"])
        pick = lambda i: _pick(new, i)
        return pick(0), {"m": pick(1), "v": pick(2), "t": t}
    (p, layout, _), (g, _, _), (m, _, _), (v, _, _) = packed
    if not all_finite([g]):
        check_adam_trees(params, grads, state)  # names the array
    p, m, v = _adam_arrays(p, g, m, v, lr_t, eps_t, b1, b2, maximize,
                           new=lambda like: new_buffer(like.size, like.dtype))
    return layout.views(p), {"m": layout.views(m), "v": layout.views(v), "t": t}


def _pick(tree, i):
    return {key: _pick(value, i) if isinstance(value, dict) else value[i] for key, value in tree.items()}
