r"""Gradient estimators beyond the paper (STL, DReG, RWS, PIWAE) and the registry of training objectives.

Every bound here is a function of the log weights, :math:`\mathcal L(\log w_1, \dots, \log w_k)`,
so every gradient estimator has the form

.. math::
    \hat g = \sum_i c_i\, \nabla \log w_i, \qquad c_i = \partial \mathcal L / \partial \log w_i \ \text{held constant}

and the estimators differ only in which per-sample gradient of the recognition parameters phi
they weight, and by what (theta, the generative networks ``p_*``, always gets the exact
:math:`\sum_i c_i \nabla_\theta \log w_i`, the gradient of the bound):

========= ================================================================ ==================
estimator per-sample phi gradient                                           weight
========= ================================================================ ==================
``iwae``  :math:`\nabla_\phi \log w_i`, path through :math:`h_i` and score  :math:`c_i` (paper eq. 14 for IWAE)
``stl``   :math:`\nabla_\phi [\log p(x,h_i) - \log q_{\bar\phi}(h_i|x)]`   :math:`c_i`
``dreg``  the same path derivative                                          :math:`d_i = c_i - \partial c_i / \partial \log w_i`
``rws``   :math:`\nabla_\phi \log q_\phi(\bar h_i | x)`                     :math:`c_i`
========= ================================================================ ==================

:math:`\bar\phi` is a *stopped* copy of phi: the values of the ``q_*`` arrays unboxed from autograd's
tracer (:func:`stop_gradient`) and passed as ``log_q_params`` to
:func:`iwae_np.model.log_weight_terms`, so the latents :math:`h_i = h_i(\phi, \epsilon)` are still
sampled with the live phi (the path through every stochastic layer is kept) while every
``log q`` term sees phi as a constant: the score term drops out. :math:`\bar h` are stopped latents.
The weights :math:`c_i, d_i` are computed from the values of the log weights, so they are constants
of the differentiation by construction; a weighted sum :math:`\sum_i c_i \nabla \log w_i` is one
vector-Jacobian product of ``log w`` with the cotangent ``c`` (divided by the batch size: every
gradient here is that of the batch mean).

The DReG weight (Tucker et al. 2019, eq. 6, generalized): the score term's expectation is
:math:`E[c_i \nabla_\phi \log q(h_i)] = E[(\partial c_i/\partial \log w_i)\, \text{path}_i]` by
reparameterizing it, so :math:`E[\sum_i c_i \nabla \log w_i] = E[\sum_i (c_i - \partial c_i/\partial
\log w_i)\, \text{path}_i]`. For IWAE, :math:`c = \tilde w` and :math:`d = \tilde w^2`; the other
bounds' weights are in their ``*_sample_weights`` functions. DReG is unbiased for the gradient of
the bound; STL is biased for k > 1 and unbiased at k = 1 (and for the VAE estimate).

PIWAE (Rainforth et al. 2018): theta ascends IWAE over all ``k = M * K`` samples, phi ascends
MIWAE(M, K): one forward pass and two vector-Jacobian products.

Everything here is differentiated by autograd on :mod:`iwae_np.model` (the definition).
:data:`OBJECTIVES` is the one list of the objectives, their hyperparameter, bound and weights:
the command line, the objective names stored in checkpoints and the oracle read it.
"""
import functools
from typing import NamedTuple

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp, value_and_grad
from autograd.tracer import getval

from .bounds import (check_alpha, check_beta, check_groups, ciwae_bound, iwae_bound, iwae_gradient, miwae_bound,
                     normalized_weights, renyi_bound, vae_bound)
from .model import log_importance_weights, recognition_log_density, sample_posterior
from .special import mean, softmax
from .tree import tree_map

__all__ = ["ESTIMATORS", "OBJECTIVES", "Objective", "SampleWeights", "stop_gradient", "bound_and_weights",
           "path_log_weights", "weighted_gradients",
           "iwae_sample_weights", "vae_sample_weights", "miwae_sample_weights",
           "ciwae_sample_weights", "renyi_sample_weights", "piwae_sample_weights", "sample_weights",
           "stl_gradient", "dreg_gradient", "rws_gradient", "piwae_gradient", "estimate_gradient", "merge_gradients",
           "check_estimator", "make_objective", "objective_name", "parse_objective_name", "get_objective"]


def _is_recognition(network):
    return network.startswith("q_")  # phi: q_h1 .. q_hL; theta: p_h* and p_x


def stop_gradient(tree):
    """A constant copy of a parameter tree: its array values, unboxed from autograd's tracer."""
    return tree_map(getval, getval(tree))


# ---------------------------------------------------------------------------------------------
# the weights c_i = dL/dlog w_i (for theta and for phi) and the DReG weights d_i, per bound


class SampleWeights(NamedTuple):
    r"""Constant per-sample weights, each ``(k, batch)``.

    ``theta``: :math:`\partial \mathcal L_\theta / \partial \log w_i`; ``phi``:
    :math:`\partial \mathcal L_\phi / \partial \log w_i` (the same bound except for PIWAE);
    ``dreg``: :math:`d_i = c_i - \partial c_i / \partial \log w_i` with :math:`c` = ``phi``.
    """
    theta: np.ndarray
    phi: np.ndarray
    dreg: np.ndarray


def iwae_sample_weights(log_w):
    r"""IWAE: :math:`c_i = \tilde w_i`, :math:`d_i = \tilde w_i - \tilde w_i (1 - \tilde w_i) = \tilde w_i^2` (Tucker et al. eq. 6)."""
    w = np.asarray(normalized_weights(log_w))  # (k, batch)
    return SampleWeights(w, w, w * w)


def vae_sample_weights(log_w):
    r"""VAE estimate :math:`\frac1k \sum_i \log w_i`: :math:`c_i = d_i = 1/k` (the score term has mean zero)."""
    c = np.full(np.shape(log_w), 1.0 / np.shape(log_w)[0], dtype=np.result_type(log_w))
    return SampleWeights(c, c, c)


def miwae_sample_weights(log_w, M):
    r"""MIWAE(M, K): :math:`c_{m,j} = \tilde w^{(m)}_j / M`, :math:`d_{m,j} = (\tilde w^{(m)}_j)^2 / M`.

    :math:`\tilde w^{(m)}` are the weights normalized within group m, samples ``i = m * K + j``.
    """
    k, batch = np.shape(log_w)
    K = check_groups(k, M)
    w = np.asarray(softmax(np.reshape(log_w, (int(M), K, batch)), axis=1))  # (M, K, batch), normalized per group
    w = np.reshape(w, (k, batch))
    c = w / float(M)
    return SampleWeights(c, c, w * c)


def ciwae_sample_weights(log_w, beta):
    r"""CIWAE(beta): :math:`c_i = \beta/k + (1-\beta)\tilde w_i`, :math:`d_i = \beta/k + (1-\beta)\tilde w_i^2`."""
    beta = check_beta(beta)
    vae, iwae = vae_sample_weights(log_w), iwae_sample_weights(log_w)
    c = beta * vae.phi + (1.0 - beta) * iwae.phi
    return SampleWeights(c, c, beta * vae.dreg + (1.0 - beta) * iwae.dreg)


def renyi_sample_weights(log_w, alpha):
    r"""Renyi alpha: :math:`c_i = v_i = \operatorname{softmax}((1-\alpha) \log w)_i`, :math:`d_i = \alpha v_i + (1-\alpha) v_i^2`.

    From :math:`\partial v_i / \partial \log w_i = (1-\alpha) v_i (1 - v_i)`; alpha = 0 gives IWAE's
    weights, alpha = 1 the VAE's.
    """
    alpha = check_alpha(alpha)
    v = np.asarray(softmax((1.0 - alpha) * np.asarray(log_w), axis=0))  # (k, batch)
    return SampleWeights(v, v, alpha * v + (1.0 - alpha) * v * v)


def piwae_sample_weights(log_w, M):
    r"""PIWAE(M, K): theta gets IWAE's :math:`\tilde w` over all ``M * K`` samples, phi MIWAE(M, K)'s weights."""
    miwae = miwae_sample_weights(log_w, M)
    return SampleWeights(np.asarray(normalized_weights(log_w)), miwae.phi, miwae.dreg)


class Objective(NamedTuple):
    """A training objective: its bound and its per-sample weights, each a function of ``(log_w, value)``.

    ``hyper`` names its one hyperparameter (``"M"``, ``"beta"``, ``"alpha"``) or is None; ``default``
    is the hyperparameter's value when none is given (None: it must be given). ``check`` checks a value.
    """
    hyper: str
    default: object
    check: object
    bound: object
    sample_weights: object


def _checked_M(M):
    check_groups(M, M)  # M must be a positive integer
    return int(M)


#: Every objective training can ascend, by name. ``piwae`` uses two bounds: the one reported (and
#: ascended by theta) is IWAE over all ``M * K`` samples, phi ascends MIWAE(M, K).
OBJECTIVES = {
    "vae": Objective(None, None, None, lambda log_w, _: vae_bound(log_w), lambda log_w, _: vae_sample_weights(log_w)),
    "iwae": Objective(None, None, None, lambda log_w, _: iwae_bound(log_w), lambda log_w, _: iwae_sample_weights(log_w)),
    "miwae": Objective("M", 1, _checked_M, miwae_bound, miwae_sample_weights),
    "ciwae": Objective("beta", None, check_beta, ciwae_bound, ciwae_sample_weights),
    "piwae": Objective("M", 1, _checked_M, lambda log_w, M: iwae_bound(log_w), piwae_sample_weights),
    "renyi": Objective("alpha", None, check_alpha, renyi_bound, renyi_sample_weights),
}


def _objective(objective):
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {list(OBJECTIVES)}")
    return OBJECTIVES[objective]


def _hyper_value(objective, M=1, beta=None, alpha=None):
    """The value of the objective's hyperparameter among ``M, beta, alpha``, checked; ValueError for a value it ignores."""
    spec = _objective(objective)
    given = {"M": M, "beta": beta, "alpha": alpha}
    for name, value in given.items():
        if name != spec.hyper and value is not None and not (name == "M" and value == 1):
            takers = [o for o, spec in OBJECTIVES.items() if spec.hyper == name]
            raise ValueError(f"{name} = {value!r} applies to the {' and '.join(takers)} "
                             f"objective{'s' if len(takers) > 1 else ''} only, not {objective!r}")
    if spec.hyper is None:
        return None
    value = given[spec.hyper]
    return spec.check(spec.default if value is None else value)


def bound_and_weights(objective, M=1, beta=None, alpha=None):
    """``(bound(log_w) -> (batch,), sample_weights(log_w) -> SampleWeights)`` of a named objective."""
    spec, value = _objective(objective), _hyper_value(objective, M, beta, alpha)
    return (lambda log_w: spec.bound(log_w, value)), (lambda log_w: spec.sample_weights(log_w, value))


def sample_weights(log_w, objective="iwae", M=1, beta=None, alpha=None):
    """The :class:`SampleWeights` of a named objective at the log weights ``log_w (k, batch)``."""
    return bound_and_weights(objective, M, beta, alpha)[1](np.asarray(getval(log_w)))



# ---------------------------------------------------------------------------------------------
# the per-sample gradients the estimators weight


def path_log_weights(params, x, eps):
    r""":math:`\log p(x, h_i) - \log q_{\bar\phi}(h_i|x)`: the same values as ``log w``, but every ``log q``
    term sees a stopped copy of phi while the latents keep their path to phi."""
    phi_stopped = {net: value for net, value in stop_gradient(params).items() if _is_recognition(net)}
    return log_importance_weights(params, x, eps, log_q_params=phi_stopped)


def weighted_gradients(log_w_fn, params, weights_fn, *which):
    r"""One forward pass of ``log_w_fn``, then :math:`\frac1B \sum_{i,b} c_{i,b} \nabla \log w_{i,b}` for each
    field of ``weights_fn(log_w)`` named in ``which``. Returns ``(log_w, weights, [gradient trees])``."""
    vjp, log_w = make_vjp(log_w_fn)(params)  # log_w (k, batch)
    weights = weights_fn(log_w)
    batch = np.shape(log_w)[1]
    cache = {}
    for field in which:  # theta and phi share one backward pass when their weights are the same array
        c = getattr(weights, field)
        if id(c) not in cache:
            cache[id(c)] = vjp(c / batch)
    return log_w, weights, [cache[id(getattr(weights, field))] for field in which]


def check_estimator(estimator):
    """``estimator`` (None meaning ``"iwae"``) must be one of :data:`ESTIMATORS`; returns its name."""
    estimator = "iwae" if estimator is None else estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {list(ESTIMATORS)}")
    return estimator


def estimate_gradient(params, x, eps, objective="iwae", estimator="iwae", M=1, beta=None, alpha=None):
    r"""``(bound, gradient)``: the batch-mean bound at ``eps`` and an estimate of its ascent direction.

    ``estimator``: ``"iwae"`` (the paper's: autograd of the bound, through the reparameterized
    latents and the score; for PIWAE its two vector-Jacobian products), ``"stl"``, ``"dreg"`` or
    ``"rws"`` for phi, see the module docstring; theta always as the bound's own gradient.
    ``objective`` is one of :data:`OBJECTIVES`; ``M`` for miwae / piwae, ``beta`` for ciwae, ``alpha`` for renyi.
    """
    estimator = check_estimator(estimator)
    bound_fn, weights_fn = bound_and_weights(objective, M, beta, alpha)
    full = lambda p: log_importance_weights(p, x, eps)  # noqa: E731

    if estimator == "iwae" and objective != "piwae":
        return value_and_grad(lambda p: mean(bound_fn(full(p))))(params)
    if estimator in ("iwae", "rws"):
        log_w, weights, (g_theta, g_phi) = weighted_gradients(full, params, weights_fn, "theta", "phi")
        if estimator == "rws":  # phi ascends sum_i c_i log q_phi(stop(h_i) | x)
            x = np.asarray(getval(x), dtype=log_w.dtype)  # already validated by the forward pass
            h = [getval(h_l) for h_l in sample_posterior(stop_gradient(params), x, eps)[0]]  # stopped
            batch = np.shape(log_w)[1]
            g_phi = value_and_grad(lambda p: anp.sum(weights.phi * recognition_log_density(p, x, h)) / batch)(params)[1]
    else:  # stl and dreg: the path derivative, weighted by c or by the DReG weights d
        phi_field = "phi" if estimator == "stl" else "dreg"
        log_w, _, (g_theta, g_phi) = weighted_gradients(
            lambda p: path_log_weights(p, x, eps), params, weights_fn, "theta", phi_field)
    return mean(bound_fn(log_w)), merge_gradients(g_theta, g_phi)


def merge_gradients(theta_from, phi_from):
    """The generative networks (theta) of one gradient tree with the recognition networks (phi) of another."""
    return {net: (phi_from if _is_recognition(net) else theta_from)[net] for net in theta_from}


def stl_gradient(params, x, eps):
    r"""STL for IWAE (Roeder et al. 2017): theta as IWAE; phi :math:`\sum_i \tilde w_i \nabla_\phi[\log p(x,h_i) - \log q_{\bar\phi}(h_i|x)]`."""
    return estimate_gradient(params, x, eps, "iwae", "stl")[1]


def dreg_gradient(params, x, eps):
    r"""DReG for IWAE (Tucker et al. 2019, eq. 6): theta as IWAE; phi :math:`\sum_i \tilde w_i^2 \nabla_\phi[\log p(x,h_i) - \log q_{\bar\phi}(h_i|x)]`."""
    return estimate_gradient(params, x, eps, "iwae", "dreg")[1]


def rws_gradient(params, x, eps):
    r"""RWS wake-phi (Bornschein & Bengio 2015): theta as IWAE; phi :math:`\sum_i \tilde w_i \nabla_\phi \log q_\phi(\bar h_i|x)`."""
    return estimate_gradient(params, x, eps, "iwae", "rws")[1]


def piwae_gradient(params, x, eps, M):
    r"""PIWAE(M, K) (Rainforth et al. 2018): theta :math:`\nabla_\theta \mathcal L_{MK}` (IWAE over all samples), phi :math:`\nabla_\phi \mathcal L_{M,K}` (MIWAE)."""
    return estimate_gradient(params, x, eps, "piwae", "iwae", M=M)[1]


#: Gradient estimators of the batch-mean IWAE bound: name -> ``f(params, x, eps)`` -> ascent-gradient tree.
#: ``iwae`` is autograd's gradient of the bound (paper eq. 14).
ESTIMATORS = {"iwae": iwae_gradient, "stl": stl_gradient, "dreg": dreg_gradient, "rws": rws_gradient}


def make_objective(objective="iwae", estimator=None, k=None, M=1, beta=None, alpha=None, estimate=None):
    """A training objective ``fn(params, x, eps) -> (batch-mean bound, ascent-gradient tree)``.

    Checks the names and hyperparameters now (``ValueError`` naming the problem): ``M`` must divide
    ``k`` (when ``k`` is given) for miwae / piwae, ``beta`` in [0, 1] for ciwae, a finite ``alpha`` for renyi.
    ``estimate`` computes it, with the signature of :func:`estimate_gradient` (the default, the definition);
    the fast engine passes its own (:func:`iwae_np.fast.estimate_gradient`).
    """
    estimator = check_estimator(estimator)
    _hyper_value(objective, M, beta, alpha)
    if objective in ("miwae", "piwae") and k is not None:
        check_groups(k, M)
    estimate = estimate_gradient if estimate is None else estimate

    def objective_fn(params, x, eps):
        if k is not None and np.shape(eps[0])[0] != k:
            raise ValueError(f"this objective was made for k = {k} samples, eps has {np.shape(eps[0])[0]}")
        return estimate(params, x, eps, objective, estimator, M=M, beta=beta, alpha=alpha)

    objective_fn.__name__ = f"{objective}_{estimator}"
    return objective_fn


# ---------------------------------------------------------------------------------------------
# names of training objectives (get_objective): "iwae", "iwae+dreg", "miwae:M=5+dreg", "ciwae:beta=0.5", "renyi:alpha=-1+stl"


def objective_name(objective="iwae", estimator=None, M=1, beta=None, alpha=None):
    """The canonical name of an objective and estimator: ``objective[:hyper=value][+estimator]``.

    Only the hyperparameter the objective uses is written, and the estimator unless it is ``"iwae"``
    (the paper's): ``objective_name("iwae")`` is ``"iwae"``, the name of the core's own objective.
    """
    estimator = check_estimator(estimator)
    value = _hyper_value(objective, M, beta, alpha)  # checks every setting
    hyper = "" if value is None else f":{OBJECTIVES[objective].hyper}={value!r}"
    return objective + hyper + ("" if estimator == "iwae" else f"+{estimator}")


def parse_objective_name(name):
    """Inverse of :func:`objective_name`: ``{"objective", "estimator", "M", "beta", "alpha"}``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an objective name must be a non-empty string, got {name!r}")
    spec, _, estimator = name.partition("+")
    objective, _, hyper = spec.partition(":")
    settings = {"objective": objective, "estimator": estimator or "iwae", "M": 1, "beta": None, "alpha": None}
    if hyper:
        key, _, value = hyper.partition("=")
        if key not in {o.hyper for o in OBJECTIVES.values()} - {None} or not value:
            raise ValueError(f"objective name {name!r}: expected objective[:M=..|beta=..|alpha=..][+estimator]")
        try:
            settings[key] = int(value) if key == "M" else float(value)
        except ValueError:
            raise ValueError(f"objective name {name!r}: {key} = {value!r} is not a number") from None
    if objective_name(**settings) != name:  # unknown parts, or a hyperparameter the objective does not use
        raise ValueError(f"objective name {name!r} is not canonical; expected {objective_name(**settings)!r}")
    return settings


def get_objective(name, k=None, estimate=None):
    """The training objective called ``name``: ``fn(params, x, eps) -> (batch-mean bound, ascent gradient)``.

    ``name`` is ``"vae"``, ``"iwae"`` or a canonical name of an objective beyond the paper with its
    estimator, ``objective[:M=..|beta=..|alpha=..][+estimator]`` such as ``"miwae:M=5+dreg"`` (see
    :func:`objective_name`); names are rebuilt on every lookup (cached), so a name stored in a
    checkpoint trains again in a fresh process. ``k`` checks that M divides it. ``estimate``: as for
    :func:`make_objective`.
    """
    return _objective_from_name(name, k, estimate)


@functools.lru_cache(maxsize=None)
def _objective_from_name(name, k, estimate):
    try:
        settings = parse_objective_name(name)
    except ValueError as err:
        raise ValueError(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)} "
                         f"or a name like 'miwae:M=5+dreg' ({err})") from None
    return make_objective(k=k, estimate=estimate, **settings)
