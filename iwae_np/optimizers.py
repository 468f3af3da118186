r"""Adam (Kingma & Ba 2015) over a parameter tree, with the IWAE paper's settings.

The paper (section 5) uses beta1 = 0.9, beta2 = 0.999 and eps = 1e-4 (Adam's own default is
1e-8; the larger eps damps steps of parameters whose gradients are tiny). The state is a plain
dict ``{"m": tree, "v": tree, "t": int}`` so it goes into checkpoints as it is.
"""
import numpy as np

from .tree import check_same_structure, flatten_tree, tree_map

__all__ = ["adam_init", "adam_update", "PAPER_ADAM"]

#: The paper's Adam hyperparameters.
PAPER_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-4}


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

    Returns ``(new_params, new_state)``; nothing is modified in place. Every array keeps the
    dtype of its parameter (the hyperparameters are Python floats). Raises ``ValueError`` when
    ``grads`` (or the state) does not have the structure and shapes of ``params``, or a gradient
    is not finite.
    """
    check_same_structure(grads, params, what="gradient tree")
    check_same_structure(state["m"], params, what="Adam state 'm'")
    check_same_structure(state["v"], params, what="Adam state 'v'")
    for name, g in flatten_tree(grads).items():
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gradient of {name!r} is not finite; refusing to update")
    t = state["t"] + 1
    m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
    v = tree_map(lambda v, g: b2 * v + (1 - b2) * (g * g), state["v"], grads)
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t  # bias corrections
    new_params = tree_map(lambda p, m, v: p - lr * (m / c1) / (np.sqrt(v / c2) + eps), params, m, v)
    return new_params, {"m": m, "v": v, "t": t}
