"""What a fixture holds besides its inputs: every quantity iwae_np computes from ``(params, x, eps)``.

The latents, each log-density term, ``log w``, the normalized weights, every bound (per example and
batch mean) and the gradient of each objective and estimator with respect to every parameter.
"""
import math

import numpy as np

from ..bounds import normalized_weights
from ..estimators import OBJECTIVES, bound_and_weights, estimate_gradient
from ..model import log_weight_terms
from ..tree import flatten_tree
from .format import OracleInputError
from .keys import BOUND_NAMES, GRADIENT_NAMES, bound_key, bound_mean_key, grad_key, latent_key, term_key

__all__ = ["default_settings", "check_settings", "verified_settings", "GRADIENTS", "BOUNDS", "compute_outputs",
           "gradients_given"]


def default_settings(k):
    """Settings of the extra bounds for ``k`` samples.

    ``M`` (MIWAE and PIWAE) is the largest divisor of ``k`` not above ``sqrt(k)``, so ``K = k / M``
    samples per group: k = 50 gives M = 5, K = 10; a prime k (1, 5) gives M = 1 (MIWAE = IWAE).
    CIWAE's beta = 0.3 and Renyi's alpha = 0.2: beta, 1 - beta, alpha and 1 - alpha all differ, so a port
    that swaps beta with 1 - beta or alpha with 1 - alpha disagrees (0.5 could not tell them apart).
    """
    M = max(m for m in range(1, math.isqrt(k) + 1) if k % m == 0)
    return {"miwae_M": M, "piwae_M": M, "ciwae_beta": 0.3, "renyi_alpha": 0.2}


def check_settings(settings, k, error=OracleInputError):
    """``settings`` if they are the four of :func:`default_settings` with usable values for ``k`` samples (M an
    integer >= 1 dividing k, beta and alpha finite numbers); otherwise ``error`` naming the setting."""
    if not isinstance(settings, dict):
        raise error(f"the settings must be an object, got {settings!r}")
    unknown, missing = sorted(set(settings) - set(default_settings(1))), sorted(set(default_settings(1)) - set(settings))
    if unknown or missing:
        raise error(f"unknown settings {unknown} or missing settings {missing}; the settings are "
                    f"{sorted(default_settings(1))}")
    for m in ("miwae_M", "piwae_M"):
        M = settings[m]
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 1:
            raise error(f"{m} (the number of groups) must be an integer >= 1, got {M!r}")
        if k % M:
            raise error(f"{m} = {M} must divide k = {k}")
    for name in ("ciwae_beta", "renyi_alpha"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise error(f"{name} must be a finite number, got {value!r}")
    return settings


def _hyperparameter(objective, settings):
    """``{hyper: value}`` of ``objective``'s hyperparameter (:data:`iwae_np.estimators.OBJECTIVES`) in a fixture's
    settings, stored as ``<objective>_<hyper>`` (``miwae_M``, ``ciwae_beta``, ...); empty for one without."""
    hyper = OBJECTIVES[objective].hyper
    return {} if hyper is None else {hyper: settings[f"{objective}_{hyper}"]}


def _gradient_function(name):
    # an objective's own gradient (the paper's estimator), or an estimator of IWAE's gradient
    if name in OBJECTIVES:
        return lambda params, x, eps, s: estimate_gradient(params, x, eps, name, "iwae", **_hyperparameter(name, s))[1]
    return lambda params, x, eps, s: estimate_gradient(params, x, eps, "iwae", name)[1]


#: Gradients stored, name -> function (params, x, eps, settings) -> tree: the ascent direction of the
#: batch-mean bound, by the definition (:func:`iwae_np.estimators.estimate_gradient`). An objective's name gives
#: its own gradient (autograd of the bound; for ``piwae`` IWAE over all k samples for theta, MIWAE(M, K) for
#: phi); ``stl``, ``dreg``, ``rws`` estimate IWAE's gradient (theta as ``iwae``). The names, in the format's
#: order, are :data:`~iwae_np.oracle.keys.GRADIENT_NAMES`.
GRADIENTS = {name: _gradient_function(name) for name in GRADIENT_NAMES}


def gradients_given(results, names, what):
    """The objectives whose gradient ``results`` gives for every parameter in ``names`` (all or none of each).

    ``what`` names the results in the error, e.g. ``"replay results"``.
    """
    out = []
    for g in GRADIENTS:
        given = [p for p in names if grad_key(g, p) in results]
        if given and len(given) != len(names):
            missing = next(p for p in names if grad_key(g, p) not in results)
            raise OracleInputError(f"{what} give some grad.{g}.* but not all: missing key {grad_key(g, missing)!r}")
        if given:
            out.append(g)
    return out


#: Per-example bounds, name -> function (log_w, settings) -> (batch,), from the registry of objectives.
BOUNDS = {name: (lambda log_w, s, name=name: bound_and_weights(name, **_hyperparameter(name, s))[0](log_w))
          for name in BOUND_NAMES}


def compute_outputs(params, x, eps, settings, gradients=None):
    """Every output quantity of a fixture, by key, as iwae_np computes it from the inputs (docs/oracle.md section 3).

    ``gradients``: the names of :data:`GRADIENTS` to compute (default all of them)."""
    out = log_weight_terms(params, x, eps)
    log_w = np.asarray(out["log_w"])  # (k, batch)
    outputs = {latent_key(l): np.asarray(h) for l, h in enumerate(out["h"], start=1)}
    outputs.update({term_key(name): np.asarray(term) for name, term in out["terms"].items()})
    outputs["log_w"] = log_w
    outputs["normalized_weights"] = np.asarray(normalized_weights(log_w))
    for bname, bound in BOUNDS.items():
        per_example = np.asarray(bound(log_w, settings))  # (batch,)
        outputs[bound_key(bname)] = per_example
        outputs[bound_mean_key(bname)] = np.mean(per_example)
    for gname, gradient in GRADIENTS.items():
        if gradients is not None and gname not in gradients:
            continue
        for pname, value in flatten_tree(gradient(params, x, eps, settings)).items():
            outputs[grad_key(gname, pname)] = np.asarray(value)
    return outputs




def verified_settings(fixture):
    """The fixture's ``settings``, checked against its own checksummed outputs: every bound recomputed from the
    stored ``log_w`` with them, and the PIWAE gradient recomputed on the stored noise, must equal the stored
    arrays to the fixture's tolerance. The settings are a manifest field no checksum covers; a verdict of replay
    or statistical mode depends on them, so an edited ``ciwae_beta`` or ``miwae_M`` must not pass (issue 20)."""
    m, arrays = fixture.manifest, fixture.arrays
    settings = check_settings(m["settings"], m["k"])
    tol = fixture.tolerance
    log_w = arrays["log_w"]

    def differs(value, key):
        ref = np.asarray(arrays[key], np.float64)
        err = np.max(np.abs(np.asarray(value, np.float64) - ref), initial=0.0)
        return not err <= tol["rtol"] * np.max(np.abs(ref), initial=0.0) + tol["atol"]

    with np.errstate(all="ignore"):
        for name, bound in BOUNDS.items():
            if differs(bound(log_w, settings), bound_key(name)):
                raise OracleInputError(f"fixture {m.get('name')!r}: its settings {settings} do not give its stored "
                                       f"{bound_key(name)!r}: the manifest's settings were edited")
        params, x, eps = fixture.model_inputs()
        piwae = flatten_tree(GRADIENTS["piwae"](params, x, eps, settings))
    if any(differs(value, grad_key("piwae", p)) for p, value in piwae.items()):
        raise OracleInputError(f"fixture {m.get('name')!r}: its piwae_M = {settings['piwae_M']} does not give its "
                               "stored grad.piwae: the manifest's settings were edited")
    return settings
