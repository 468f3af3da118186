r"""Numerical verification of gradients: central finite differences and the paper's identity.

:func:`check_model` is what ``iwae-np check`` runs: for a small random model it compares,
parameter array by parameter array, autograd's gradient of each objective against

- central finite differences of the objective on the same noise ``eps``, and
- the per-sample identity: :math:`\nabla \mathcal L_k = \sum_i \tilde w_i \nabla \log w_i`
  (paper eq. 14) for IWAE, :math:`\frac1k \sum_i \nabla \log w_i` (paper eq. 7) for the VAE.

Errors are reported per array as the largest absolute difference and that difference relative
to the largest magnitude of the reference array (an infinity-norm relative error):
``max|a - r| / max|r|``.
"""
from dataclasses import dataclass

import numpy as np

from ..bounds import iwae_gradient, iwae_objective, vae_gradient, vae_objective
from ..gradients import average_gradient, importance_weighted_gradient, log_weight_gradients
from ..tree import flatten_tree, unflatten_tree
from .compare import array_error
from .problems import SMALL_ARCHITECTURES, random_problem

__all__ = ["finite_difference_gradient", "compare_gradients", "GradientCheckRow", "check_model",
           "format_table", "FD_RTOL", "IDENTITY_RTOL"]

#: Tolerances in float64: finite differences (truncation + rounding ~1e-9) and identities (rounding).
FD_RTOL = 1e-6
IDENTITY_RTOL = 1e-10

def finite_difference_gradient(f, params, step=1e-5):
    r"""Central differences :math:`\partial f / \partial p_j \approx [f(p + h e_j) - f(p - h e_j)] / 2h`.

    Every element of every array of the tree, in float64 arithmetic on float64 parameters:
    the truncation error is :math:`O(h^2 f''')` and the rounding error :math:`O(\epsilon |f| / h)`,
    both about 1e-10 at ``h = 1e-5``.
    """
    flat = flatten_tree(params)
    out = {}
    for name, value in flat.items():
        g = np.zeros(value.shape, dtype=np.float64)
        for j in np.ndindex(value.shape):
            def at(delta):
                v = value.copy()
                v[j] += delta
                return float(f(unflatten_tree({**flat, name: v})))
            g[j] = (at(step) - at(-step)) / (2 * step)
        out[name] = g
    return unflatten_tree(out)


@dataclass
class GradientCheckRow:
    architecture: str
    objective: str
    reference: str
    parameter: str
    max_abs_error: float
    max_rel_error: float
    tolerance: float

    @property
    def passed(self):
        return bool(self.max_rel_error <= self.tolerance)


def compare_gradients(test, reference):
    """``{name: (max abs error, max rel error)}`` per array of two trees (:func:`iwae_np.verify.compare.array_error`)."""
    test, reference = flatten_tree(test), flatten_tree(reference)
    return {name: array_error(test[name], r)[::2] for name, r in reference.items()}


def check_model(arch_name="one-layer", k=5, batch=3, seed=0, step=1e-5,
                fd_rtol=FD_RTOL, identity_rtol=IDENTITY_RTOL, objectives=("vae", "iwae")):
    """Rows of :class:`GradientCheckRow` for both objectives and both references on one small model."""
    arch = SMALL_ARCHITECTURES[arch_name] if isinstance(arch_name, str) else arch_name
    params, x, eps = random_problem(arch, k, batch, np.random.default_rng(seed))
    objective_fns = {"vae": (vae_objective, vae_gradient, average_gradient),
                     "iwae": (iwae_objective, iwae_gradient, importance_weighted_gradient)}
    log_w, per_sample = log_weight_gradients(params, x, eps)
    rows = []
    name = arch_name if isinstance(arch_name, str) else "custom"
    for objective in objectives:
        f, df, identity = objective_fns[objective]
        auto = df(params, x, eps)
        fd = finite_difference_gradient(lambda p: f(p, x, eps), params, step)
        for param, (a, r) in compare_gradients(auto, fd).items():
            rows.append(GradientCheckRow(name, f"{objective} k={k}", "finite differences", param, a, r, fd_rtol))
        ident = identity(per_sample, log_w)
        for param, (a, r) in compare_gradients(auto, ident).items():
            rows.append(GradientCheckRow(name, f"{objective} k={k}", "identity", param, a, r, identity_rtol))
    return rows


def format_table(rows):
    """A Markdown table: architecture, objective, reference, parameter, errors, verdict."""
    lines = ["| architecture | objective | reference | parameter | max abs error | max rel error | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "pass" if r.passed else f"FAIL (tol {r.tolerance:.0e})"
        lines.append(f"| {r.architecture} | {r.objective} | {r.reference} | {r.parameter} | "
                     f"{r.max_abs_error:.2e} | {r.max_rel_error:.2e} | {verdict} |")
    return "\n".join(lines)
