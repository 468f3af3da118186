r"""Adam (Kingma & Ba 2015, Algorithm 1) over a parameter tree, with the IWAE paper's settings.

The paper (section 5) uses beta1 = 0.9, beta2 = 0.999 and eps = 1e-4 (Adam's own default is
1e-8; the larger eps damps steps of parameters whose gradients are tiny). The state is a plain
dict ``{"m": tree, "v": tree, "t": int}`` so it goes into checkpoints as it is. The update is
written leaf by leaf, one line per line of the algorithm; the fast engine's Adam
(:func:`iwae_np.fast.adam_update`) runs the same update over one flat buffer.
"""
import math

import numpy as np

from .tree import check_same_structure, flatten_tree, tree_map

__all__ = ["adam_init", "adam_update", "check_adam_settings", "check_adam_trees", "PAPER_ADAM", "NonFiniteGradientError"]

#: The paper's Adam hyperparameters.
PAPER_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-4}


class NonFiniteGradientError(ValueError):
    """A gradient with NaN or infinite entries: :func:`adam_update` refuses to take the step."""


def adam_init(params):
    """Zero first and second moments shaped like ``params``, step count 0."""
    return {"m": tree_map(np.zeros_like, params), "v": tree_map(np.zeros_like, params), "t": 0}


def _is_real(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def check_adam_settings(lr, b1, b2, eps, state):
    """Adam's settings and step count; ``ValueError`` naming the problem.

    ``lr > 0``, ``0 <= b1, b2 < 1`` and ``eps > 0``, finite numbers (``b1 = 1`` divides by ``1 - b1^t = 0``,
    ``eps = 0`` by a zero ``sqrt(v)``, a negative ``lr`` steps uphill); ``state["t"]`` an integer >= 0.
    """
    if not (_is_real(lr) and lr > 0):
        raise ValueError(f"the learning rate lr must be a finite number > 0, got {lr!r}")
    for name, value in (("b1", b1), ("b2", b2)):
        if not (_is_real(value) and 0 <= value < 1):
            raise ValueError(f"Adam's {name} must be a number in [0, 1), got {value!r}")
    if not (_is_real(eps) and eps > 0):
        raise ValueError(f"Adam's eps must be a finite number > 0, got {eps!r}")
    t = state.get("t") if isinstance(state, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"the Adam state's step count t must be an integer >= 0, got {t!r}")


def check_adam_trees(params, grads, state):
    """The gradient and the moments shaped like the parameters (``ValueError``), the gradient finite
    (:class:`NonFiniteGradientError`, naming the array)."""
    check_same_structure(grads, params, what="gradient tree")
    check_same_structure(state["m"], params, what="Adam state 'm'")
    check_same_structure(state["v"], params, what="Adam state 'v'")
    for name, g in flatten_tree(grads).items():
        if not np.all(np.isfinite(g)):
            raise NonFiniteGradientError(f"gradient of {name!r} is not finite; refusing to update")


def adam_update(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-4, maximize=False):
    r"""One Adam step that *descends* ``grads`` (pass the gradient of the loss, i.e. minus the bound).

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat m &= m / (1 - \beta_1^t), \qquad \hat v = v / (1 - \beta_2^t) \\
        \theta &\leftarrow \theta - \alpha\, \hat m / (\sqrt{\hat v} + \epsilon)

    ``maximize=True`` ascends ``grads`` instead (PyTorch's flag of the same name): the step of
    :math:`g = -\text{grads}`. Returns ``(new_params, new_state)``; the inputs are not modified. Every
    array keeps the dtype of its parameter (the hyperparameters are Python floats). Raises what
    :func:`check_adam_settings` raises, ``ValueError`` when ``grads`` or the moments are not shaped like
    ``params``, and :class:`NonFiniteGradientError` (a ``ValueError``) when a gradient is not finite.
    """
    check_adam_settings(lr, b1, b2, eps, state)
    check_adam_trees(params, grads, state)
    t = int(state["t"]) + 1
    lr, b1, b2, eps = float(lr), float(b1), float(b2), float(eps)

    def step(p, g, m, v):
        g = -g if maximize else g
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v

    new = tree_map(step, params, grads, state["m"], state["v"])
    pick = lambda i: tree_map(lambda leaf: leaf[i], new)  # noqa: E731  (the leaves of new are (p, m, v) tuples)
    return pick(0), {"m": pick(1), "v": pick(2), "t": t}
