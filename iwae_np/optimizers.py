r"""Adam (Kingma & Ba 2015) over a parameter tree, with the IWAE paper's settings.

The paper (section 5) uses beta1 = 0.9, beta2 = 0.999 and eps = 1e-4 (Adam's own default is
1e-8; the larger eps damps steps of parameters whose gradients are tiny). The state is a plain
dict ``{"m": tree, "v": tree, "t": int}`` so it goes into checkpoints as it is.
"""
import math

import numpy as np

from .tree import check_same_structure, flatten_tree, tree_map, unflatten_tree

__all__ = ["adam_init", "adam_update", "PAPER_ADAM", "NonFiniteGradientError"]

#: The paper's Adam hyperparameters.
PAPER_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-4}


class NonFiniteGradientError(ValueError):
    """A gradient with NaN or infinite entries: :func:`adam_update` refuses to take the step."""


def adam_init(params):
    """Zero first and second moments shaped like ``params``, step count 0."""
    zeros = lambda p: np.zeros_like(p)
    return {"m": tree_map(zeros, params), "v": tree_map(zeros, params), "t": 0}


def adam_update(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-4):
    r"""One Adam step that *descends* ``grads`` (pass the gradient of the loss, i.e. minus the bound).

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat m &= m / (1 - \beta_1^t), \qquad \hat v = v / (1 - \beta_2^t) \\
        \theta &\leftarrow \theta - \alpha\, \hat m / (\sqrt{\hat v} + \epsilon)

    Computed leaf by leaf with Kingma & Ba's equivalent form
    :math:`\theta \leftarrow \theta - \alpha_t m / (\sqrt v + \hat\epsilon)`,
    :math:`\alpha_t = \alpha \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`, :math:`\hat\epsilon = \epsilon \sqrt{1 - \beta_2^t}`.
    Returns ``(new_params, new_state)``; the inputs are not modified (only fresh temporaries are
    updated in place). Every array keeps the
    dtype of its parameter (the hyperparameters are Python floats). Raises ``ValueError`` when
    ``grads`` (or the state) does not have the structure and shapes of ``params``, and
    :class:`NonFiniteGradientError` (a ``ValueError``) when a gradient is not finite.
    """
    check_same_structure(grads, params, what="gradient tree")
    check_same_structure(state["m"], params, what="Adam state 'm'")
    check_same_structure(state["v"], params, what="Adam state 'v'")
    flat_params, flat_grads = flatten_tree(params), flatten_tree(grads)
    flat_m, flat_v = flatten_tree(state["m"]), flatten_tree(state["v"])
    for name, g in flat_grads.items():
        if not np.all(np.isfinite(g)):
            raise NonFiniteGradientError(f"gradient of {name!r} is not finite; refusing to update")
    t = state["t"] + 1
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t  # bias corrections
    # m_hat / (sqrt(v_hat) + eps) = (sqrt(c2) / c1) * m / (sqrt(v) + eps sqrt(c2)): Kingma & Ba's
    # section 2 rewrite, the same number with two fewer passes over each array
    lr_t, eps_t = lr * math.sqrt(c2) / c1, eps * math.sqrt(c2)
    m, v, new_params = {}, {}, {}
    for name, p in flat_params.items():
        g, m_old, v_old = flat_grads[name], flat_m[name], flat_v[name]
        m[name] = m_new = b1 * m_old + (1 - b1) * g              # m <- beta1 m + (1 - beta1) g
        g2 = g * g
        g2 *= 1 - b2
        v[name] = v_new = np.add(b2 * v_old, g2, out=g2)          # v <- beta2 v + (1 - beta2) g^2
        step = np.sqrt(v_new)
        step += eps_t
        np.divide(m_new, step, out=step)
        step *= lr_t
        new_params[name] = p - step                               # theta <- theta - alpha m_hat / (sqrt(v_hat) + eps)
    m, v, new_params = unflatten_tree(m), unflatten_tree(v), unflatten_tree(new_params)
    return new_params, {"m": m, "v": v, "t": t}
