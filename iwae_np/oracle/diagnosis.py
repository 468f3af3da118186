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

from ..tree import flatten_tree
from ..verify.compare import array_error
from .keys import grad_key
from .variants import REFERENCE, VARIANTS, evaluate, evaluate_with_gradient, recover_eps, transform_params

__all__ = ["DIAGNOSIS_RTOL", "VariantMatch", "candidate_iwae_keys", "diagnose_exact", "format_diagnosis"]

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


def format_diagnosis(matches, statistic="rel error", threshold=None, limit=6):
    """Lines saying which variants the candidate matches, with the closest few otherwise."""
    if not matches:
        return ["diagnosis: the results hold none of log_w, bound.iwae, bound_mean.iwae, grad.iwae.*: nothing to "
                "diagnose"]
    hits = [m for m in matches if m.matches]
    lines = []
    if hits:
        names = ", ".join(m.name for m in hits)
        if hits[0].name == "iwae" and len(hits) == 1:
            lines.append("diagnosis: the IWAE quantities agree with iwae-np's IWAE; the disagreement is elsewhere")
        else:
            lines.append(f"diagnosis: the candidate matches {names}")
        for m in hits:
            lines.append(f"  {m.name}: {m.description}")
    else:
        lines.append("diagnosis: the candidate matches none of the known mistakes; the closest:")
    cut = threshold if threshold is not None else DIAGNOSIS_RTOL
    lines.append(f"| variant | {statistic} per quantity (match: <= {cut:.3g}) | verdict |")
    lines.append("|---|---|---|")
    for m in matches[:max(limit, len(hits))]:
        errs = ", ".join(f"{q} {e:.2g}" for q, e in m.errors.items()) + (f" ({m.note})" if m.note else "")
        lines.append(f"| {m.name} | {errs} | {'match' if m.matches else '-'} |")
    return lines
