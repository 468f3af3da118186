r"""Which known mistake a failing candidate made: its IWAE quantities against each :data:`~iwae_np.oracle.variants.VARIANTS`.

Exact form (``oracle check`` and ``oracle replay``): on the candidate's own noise (the fixture's ``eps``, or
the noise recovered from the candidate's latents under each variant's conventions), every variant's
``log w``, per-example bound, batch value and gradient are computed and compared with the candidate's
``log_w``, ``bound.iwae``, ``bound_mean.iwae`` and ``grad.iwae.*``; a variant *matches* when every
quantity the candidate gave agrees to :data:`DIAGNOSIS_RTOL` (relative to the array's largest entry).

Statistical form (``oracle statistical``, :mod:`iwae_np.oracle.statistical`): the same comparison as a
two-sample test of the means, Bonferroni-corrected; a variant is *consistent* when no coordinate rejects.
"""
from dataclasses import dataclass, field

import numpy as np

from ..estimators import OBJECTIVES, estimate_gradient
from ..tree import flatten_tree, tree_map
from ..verify.compare import array_error
from .keys import GRADIENT_NAMES, grad_key, network_of, role_of
from .quantities import GRADIENTS
from .variants import REFERENCE, VARIANTS, evaluate, evaluate_with_gradient, get_variant, recover_eps, transform_params

__all__ = ["DIAGNOSIS_RTOL", "VariantMatch", "candidate_iwae_keys", "diagnose_exact", "format_diagnosis",
           "GradientPartMatch", "known_gradient_functions", "known_gradients", "diagnose_gradients",
           "format_gradient_diagnosis"]

#: A variant matches a candidate when each quantity agrees to this relative error by default: the float64
#: fixture tolerance (a thresholded softplus differs from IWAE by 1e-8 on its hard case, so a looser one
#: could not tell them apart). The checks pass their fixture's own tolerance.
DIAGNOSIS_RTOL = 1e-10


@dataclass
class VariantMatch:
    """How well one variant explains the candidate: an error per quantity (relative error, or |z| in the
    statistical form), and whether every quantity agrees."""
    name: str
    description: str
    errors: dict = field(default_factory=dict)
    matches: bool = False
    note: str = ""

    @property
    def worst(self):
        return max(self.errors.values()) if self.errors else float("inf")


def candidate_iwae_keys(results, param_names):
    """The candidate's keys the diagnosis uses: ``log_w``, ``bound.iwae``, ``bound_mean.iwae``, ``grad.iwae.*``
    (all parameters, or none)."""
    keys = [k for k in ("log_w", "bound.iwae", "bound_mean.iwae") if k in results]
    grads = [grad_key("iwae", p) for p in param_names]
    if all(g in results for g in grads):
        keys += grads
    return keys


def _group(key):
    return "grad.iwae" if key.startswith("grad.") else key


def _values(v, params, x, keys, eps=None, h=None):
    """The variant's IWAE quantities on the candidate's noise, by the candidate's key groups."""
    noise = eps if h is None else recover_eps(transform_params(v, params), x, h)
    if any(key.startswith("grad.") for key in keys):
        values, g = evaluate_with_gradient(v, params, x, noise)
    else:
        values, g = evaluate(v, params, x, noise), None
    out = {"log_w": values["log_w"][:, 0, :], "bound_mean.iwae": values["batch"][0],
           "bound.iwae": None if values["bound"] is None else values["bound"][0]}
    if g is not None:
        out["grad.iwae"] = flatten_tree(g)
    return out


def _error(results, key, value, names):
    if key == "grad.iwae":
        return max(array_error(results[grad_key("iwae", p)], value[p]).max_rel_error for p in names)
    return array_error(results[key], value).max_rel_error


def diagnose_exact(params, x, results, eps=None, h=None, rtol=DIAGNOSIS_RTOL, variants=VARIANTS):
    """:class:`VariantMatch` of every applicable variant, best first.

    ``results``: the candidate's arrays; the noise is ``eps`` (fixture check) or recovered from the
    candidate's latents ``h`` under each variant's own conventions (replay). A variant whose quantities
    equal IWAE's on this input (a thresholded softplus where no logit exceeds 20) cannot be told from it
    and is not reported as a match.
    """
    names = list(flatten_tree(params))
    keys = candidate_iwae_keys(results, names)
    if not keys:
        return []
    groups = list(dict.fromkeys(_group(key) for key in keys))
    noise = eps if eps is not None else h
    L, k = len(noise), np.shape(noise[0])[0]
    matches = []
    with np.errstate(all="ignore"):
        reference = _values(REFERENCE, params, x, keys, eps, h)
        for v in variants:
            if not v.applies_to(L, k):
                continue
            values = reference if v is REFERENCE else _values(v, params, x, keys, eps, h)
            errors, note = {}, ""
            for q in groups:
                if values[q] is None:
                    note = "no per-example bound (one bound over the batch)"
                    continue
                errors[q] = float(_error(results, q, values[q], names))
            same = v is not REFERENCE and all(
                values[q] is not None and _distance(values[q], reference[q], names) <= rtol for q in groups)
            if same:
                note = "indistinguishable from iwae on this input"
            errors = {q: (e if np.isfinite(e) else float("inf")) for q, e in errors.items()}
            ok = bool(errors) and all(e <= rtol for e in errors.values()) and not note
            matches.append(VariantMatch(v.name, v.description, errors, ok, note))
    matches.sort(key=lambda m: (not m.matches, bool(m.note), m.worst))
    return matches


def _distance(a, b, names):
    if isinstance(a, dict):
        return max(array_error(a[p], b[p]).max_rel_error for p in names)
    return array_error(a, b).max_rel_error


def format_diagnosis(matches, statistic="rel error", threshold=None):
    """Lines naming the variants the candidate matches, each with its error per quantity. A variant is named only
    when it explains every number the candidate gave to the threshold: an unknown mistake gets no "closest"
    variant (a nearest unrelated one misleads, issue 19), it is said to match none, and the reader is sent to
    the localisation ("where: ...") that leads the report."""
    if not matches:
        return ["diagnosis: the results hold none of log_w, bound.iwae, bound_mean.iwae, grad.iwae.*: nothing to "
                "diagnose"]
    hits = [m for m in matches if m.matches]
    if not hits:
        return ["diagnosis: the IWAE quantities match no known mistake (a mistake is named only when it explains "
                "every number given to the tolerance); the 'where' lines above say which network, layer and term "
                "differ"]
    lines = []
    names = ", ".join(m.name for m in hits)
    if hits[0].name == "iwae" and len(hits) == 1:
        lines.append("diagnosis: the IWAE quantities agree with iwae-np's IWAE; the disagreement is elsewhere")
    else:
        lines.append(f"diagnosis: the candidate matches {names}")
    cut = threshold if threshold is not None else DIAGNOSIS_RTOL
    for m in hits:
        errs = ", ".join(f"{q} {e:.2g}" for q, e in m.errors.items())
        lines.append(f"  {m.name}: {m.description} ({statistic} {errs}; match: <= {cut:.3g})")
    return lines


# ---------------------------------------------------------------------------------------------
# the gradients of every objective, theta and phi separately


@dataclass
class GradientPartMatch:
    """Which known gradients one part (``"theta"`` or ``"phi"``) of the candidate's ``grad.<objective>`` equals:
    ``agrees`` when it is the objective's own; ``matches`` the names of :func:`known_gradients` it equals."""
    objective: str
    role: str
    agrees: bool
    matches: list = field(default_factory=list)


def _swapped_groups(k, M):
    return k // M if M > 1 and k // M != M else None


def known_gradient_functions(settings, k, batch):
    r"""``{name: (description, f(params, x, eps) -> gradient tree)}``: every gradient of the fixture format
    (section 6: each objective by autograd, STL, DReG, RWS, PIWAE), every other objective-estimator pair of
    :func:`iwae_np.estimators.estimate_gradient` (``miwae+dreg``, ...), and the mistakes seen in ports of them:
    CIWAE with :math:`1 - \beta`, Renyi with :math:`1 - \alpha`, MIWAE or PIWAE with M and K swapped, IWAE with
    the normalized weights not detached, the sign, the batch sum (``batch`` times the mean's). For ``k`` samples
    per example; each gradient is of the mean over the examples of ``x``."""
    beta, alpha = settings["ciwae_beta"], settings["renyi_alpha"]

    def pair(objective, estimator, **override):
        hyper = OBJECTIVES[objective].hyper  # the objective's own hyperparameter only (the others are refused)
        kw = {} if hyper is None else {hyper: override.get(hyper, settings[f"{objective}_{hyper}"])}
        return lambda params, x, eps: estimate_gradient(params, x, eps, objective, estimator, **kw)[1]

    def fixture_gradient(name):
        return lambda params, x, eps: GRADIENTS[name](params, x, eps, settings)

    out = {name: (f"the fixture's {name} gradient (docs/oracle.md section 6)", fixture_gradient(name))
           for name in GRADIENTS}
    for objective in OBJECTIVES:
        for estimator in ("stl", "dreg", "rws"):
            if objective != "iwae":  # (iwae with each estimator is the fixture's stl, dreg, rws)
                out[f"{objective}+{estimator}"] = (f"{objective} with the {estimator} estimator for phi",
                                                   pair(objective, estimator))
    out["ciwae(1-beta)"] = (f"CIWAE with 1 - beta = {1 - beta:g} where beta = {beta:g} belongs",
                            pair("ciwae", "iwae", beta=1 - beta))
    if alpha != 1 - alpha:
        out["renyi(1-alpha)"] = (f"Renyi with 1 - alpha = {1 - alpha:g} where alpha = {alpha:g} belongs",
                                 pair("renyi", "iwae", alpha=1 - alpha))
    for objective, key in (("miwae", "miwae_M"), ("piwae", "piwae_M")):
        swapped = _swapped_groups(k, settings[key])
        if swapped:
            out[f"{objective}(M<->K)"] = (f"{objective.upper()} with M = {swapped} groups of K = {settings[key]} "
                                          f"where M = {settings[key]} groups of K = {swapped} belong",
                                          pair(objective, "iwae", M=swapped))
    iwae = fixture_gradient("iwae")
    out["not-detached"] = ("IWAE's surrogate sum_i w~_i log w_i with the normalized weights not detached",
                           lambda params, x, eps: evaluate_with_gradient(get_variant("not-detached"), params, x, eps)[1])
    out["sign"] = ("minus the gradient: a loss's descent direction for the bound's ascent direction",
                   lambda params, x, eps: tree_map(lambda a: -a, iwae(params, x, eps)))
    out["sum-over-batch"] = (f"the gradient of the batch sum, B = {batch} times the mean's",
                             lambda params, x, eps: tree_map(lambda a: batch * a, iwae(params, x, eps)))
    return out


def known_gradients(params, x, eps, settings):
    """``{name: (description, gradient tree)}`` of :func:`known_gradient_functions` on the noise ``eps``."""
    functions = known_gradient_functions(settings, np.shape(eps[0])[0], np.shape(x)[0])
    return {name: (description, fn(params, x, eps)) for name, (description, fn) in functions.items()}


def _part_agrees(results, objective, names, value, rtol, atol):
    return all(array_error(results[grad_key(objective, p)], value[p]).max_abs_error
               <= rtol * array_error(results[grad_key(objective, p)], value[p]).max_abs_reference + atol
               for p in names)


def diagnose_gradients(params, x, results, eps, settings, objectives=None, rtol=DIAGNOSIS_RTOL, atol=0.0):
    """:class:`GradientPartMatch` for the theta and the phi part of each ``grad.<objective>`` the candidate gave
    (those in ``objectives``, default all), on the noise ``eps``: does the part agree with the objective's own
    gradient, and which :func:`known_gradients` does it equal (every array of the part to ``rtol``, ``atol``)."""
    names = list(flatten_tree(params))
    given = [g for g in GRADIENT_NAMES if all(grad_key(g, p) in results for p in names)]
    given = [g for g in given if objectives is None or g in objectives]
    if not given:
        return []
    with np.errstate(all="ignore"):
        known = {name: (d, flatten_tree(g)) for name, (d, g) in known_gradients(params, x, eps, settings).items()}
    out = []
    for objective in given:
        for role in ("theta", "phi"):
            part = [p for p in names if role_of(network_of(p)) == role]
            agrees = _part_agrees(results, objective, part, known[objective][1], rtol, atol)
            matches = [] if agrees else [name for name, (_, g) in known.items()
                                         if _part_agrees(results, objective, part, g, rtol, atol)]
            out.append(GradientPartMatch(objective, role, agrees, matches))
    return out


def format_gradient_diagnosis(parts, known_descriptions=None):
    """One line per part that does not agree: which known gradients it equals, or that it equals none."""
    lines = []
    for m in parts:
        if m.agrees:
            continue
        what = f"grad.{m.objective}, {'generative network (theta)' if m.role == 'theta' else 'recognition network (phi)'}"
        if m.matches:
            lines.append(f"diagnosis: {what} equals the known gradient {' = '.join(m.matches)}"
                         + (f" ({known_descriptions[m.matches[0]]})" if known_descriptions else ""))
        else:
            lines.append(f"diagnosis: {what} matches no known gradient (see 'where' above)")
    return lines
