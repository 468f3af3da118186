r"""Statistical mode: check a black box from N independent draws of its bound and gradient.

The candidate evaluates a fixture's parameters and batch ``N`` times, each time with fresh noise and the
fixture's ``k`` samples per example, and writes per draw its bound (``bound.<name> (N, B)`` per example
and/or ``bound_mean.<name> (N,)``) and optionally its gradient of the batch mean (``grad.<name>.<p>
(N, *shape)``, an ascent direction). iwae-np draws its own ``n_ref`` evaluations and compares the means,
coordinate by coordinate, with Welch's two-sample test,

.. math::
    t_j = \frac{\bar a_j - \bar r_j}{\sqrt{s_{a,j}^2 / N + s_{\bar r, j}^2}}, \qquad
    \nu_j = \frac{(s_{a,j}^2 / N + s_{\bar r, j}^2)^2}{(s_{a,j}^2 / N)^2 / (N - 1) + (s_{\bar r,j}^2)^2 / \nu_r},

reported as the normal z-score of the same two-sided p-value, against the Bonferroni threshold
:math:`z^* = \Phi^{-1}(1 - \alpha / 2m)` over all ``m`` coordinates tested. The reference's own bound
values are per draw (:math:`\nu_r = n_{ref} - 1`); its gradients come from ``G`` groups of draws, each
group's mean gradient from one vectorized backward pass, so :math:`s_{\bar r}^2` is the variance of the
group means over ``G`` (:math:`\nu_r = G - 1`).

Power: a candidate whose quantity is :math:`(1 + \rho)` times the right one is rejected with probability
:data:`POWER` once :math:`|\rho \mu_j| \ge (z^* + z_{POWER})\, se_j` for some coordinate, so the smallest
detectable relative bias at this ``N`` is :math:`\rho_{min} = (z^* + z_{POWER}) \min_j se_j / |\mu_j|`
(:math:`\min_j se_j / |\mu_j|` is the noise floor), and a target :math:`\rho_t` needs about
:math:`N (\rho_{min} / \rho_t)^2` draws (both sides scaled alike).
"""
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from ..model import log_importance_weights, sample_eps
from ..tree import flatten_tree
from .budget import estimate, refuse_if_too_large
from .diagnosis import GradientPartMatch, VariantMatch, known_gradient_functions
from .format import Fixture, OracleInputError, check_real_arrays, load_fixture, load_results
from .keys import grad_key, manifest_draw_shapes, network_of, role_of
from .quantities import BOUNDS, GRADIENTS, gradients_given, verified_settings
from .surrogates import SURROGATES, surrogate_key_name, surrogate_reference
from .variants import VARIANTS, evaluate, evaluate_with_gradient, tile_batch

__all__ = ["POWER", "MIN_DRAWS", "DEFAULT_DRAWS", "QuantityTest", "SplitZ", "StatisticalReport", "statistical_check",
           "welch_z", "rounding_floor", "split_by_network", "reference_statistics", "read_draws", "results_bytes", "diagnose_gradients_statistical",
           "default_draws", "MAX_RESULTS_BYTES"]

#: The probability of detection the power statement is made at.
POWER = 0.8
#: Fewest draws the statistical mode accepts from a candidate.
MIN_DRAWS = 20
#: The number of draws to ask a candidate for when nothing else is known: power for a relative bias of about 1% on
#: the small fixtures (docs/oracle.md, section 16), unless the results file would exceed :data:`MAX_RESULTS_BYTES`.
DEFAULT_DRAWS = 400
#: The largest statistical results file :func:`default_draws` plans for (a paper-sized model has 0.5 M parameters:
#: 400 draws of its gradient are 1.7 GB).
MAX_RESULTS_BYTES = 256 * 2 ** 20
#: Groups of reference draws per variant in the diagnosis, which draws N per variant (15 variants, each group
#: one backward pass; the check itself draws 4 N): Welch's degrees of freedom stay above 19 + N - 1 times
#: a factor near 1, so the t tails are close to the normal's at the Bonferroni threshold.
DIAGNOSIS_GROUPS = 20


@dataclass
class QuantityTest:
    """The test of one quantity (``bound.<name>``, ``bound_mean.<name>`` or a gradient ``grad.<name>``).

    ``noise_floor``, ``min_detectable_bias`` and ``recommended_draws`` are None when the power cannot be
    computed; ``power_note`` then says why. ``by_network`` and ``by_layer`` split a gradient's test:
    ``{"q_h1": SplitZ, ...}`` and ``{"q_h1/hidden_0": SplitZ, ...}`` (see :func:`split_by_network`)."""
    key: str
    n_coordinates: int
    max_abs_z: float
    worst: str
    noise_floor: float
    min_detectable_bias: float
    recommended_draws: int
    rejected: int = 0
    power_note: str = ""
    by_network: dict = field(default_factory=dict)
    by_layer: dict = field(default_factory=dict)

    @property
    def by_role(self):
        """``{"phi": SplitZ, "theta": SplitZ}``: the recognition and the generative networks' coordinates."""
        return _merge_splits(self.by_network, role_of)


@dataclass
class SplitZ:
    """The z-scores of a part of a gradient: its coordinates, how many reject, the largest |z| and where."""
    coordinates: int
    rejected: int
    max_abs_z: float
    worst: str


@dataclass
class StatisticalReport:
    name: str
    k: int
    draws: int
    reference_draws: int
    groups: int
    alpha: float
    threshold: float
    target: float
    tests: list
    diagnosis: list = field(default_factory=list)
    conventions: list = field(default_factory=list)
    gradient_diagnosis: list = field(default_factory=list)

    @property
    def coordinates(self):
        return sum(t.n_coordinates for t in self.tests)

    @property
    def passed(self):
        return all(t.rejected == 0 for t in self.tests)


def welch_z(mean_a, var_mean_a, df_a, mean_r, var_mean_r, df_r, floor=0.0):
    """Welch's two-sample test of equal means, each side given by its mean, the variance of that mean and
    its degrees of freedom; returns the normal z-score of the two-sided p-value (arrays broadcast).

    ``floor``: a difference of means up to ``floor`` is floating-point rounding, not evidence: the test is of
    ``max(|mean_a - mean_r| - floor, 0)`` (:func:`rounding_floor`)."""
    mean_a, mean_r = np.asarray(mean_a, float), np.asarray(mean_r, float)
    va, vr = np.asarray(var_mean_a, float), np.asarray(var_mean_r, float)
    se2 = va + vr
    with np.errstate(invalid="ignore"):
        diff = np.maximum(np.abs(mean_a - mean_r) - np.asarray(floor, float), 0.0)
        diff = np.where(np.isnan(mean_a - mean_r), np.nan, diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(diff) / np.sqrt(se2)
        df = se2 ** 2 / (va ** 2 / df_a + vr ** 2 / df_r)
        df = np.where(np.isfinite(df), df, 1e9)
        p = 2 * scipy.stats.t.sf(t, df)
        # where p underflows (|t| beyond ~38) the z-score is t itself to the precision that matters
        z = np.where(p > 1e-300, scipy.stats.norm.isf(p / 2), t)
    # no spread on either side: equal means agree, different means differ beyond any threshold
    z = np.where(se2 > 0, z, np.where(diff == 0, 0.0, np.inf))
    return np.where(np.isnan(z), np.inf, z)


def read_draws(fixture, results):
    """Validate the candidate's per-draw arrays; returns ``(N, {key: float64 array})`` and the gradient names."""
    m = fixture.manifest
    names = [p["name"] for p in m["parameters"]]
    expected = manifest_draw_shapes(m)
    unknown = sorted(set(results) - set(expected))
    if unknown:
        raise OracleInputError(f"statistical results hold keys that are not per-draw quantities: {unknown[:4]}"
                               " (see docs/oracle.md, statistical mode)")
    if not results:
        raise OracleInputError("statistical results are empty: give bound.<name> (N, B), bound_mean.<name> (N,) "
                               "and/or grad.<name>.<parameter> (N, ...)")
    N = None
    for key, shape in expected.items():
        if key not in results:
            continue
        a = np.asarray(results[key])
        if a.ndim != len(shape) + 1 or a.shape[1:] != shape:
            raise OracleInputError(f"shape mismatch for {key!r}: results have {list(a.shape)}, expected "
                                   f"[N, {', '.join(map(str, shape))}]".replace(", ]", "]"))
        if N is not None and a.shape[0] != N:
            raise OracleInputError(f"{key!r} has {a.shape[0]} draws, other keys have {N}")
        N = a.shape[0]
        if not np.all(np.isfinite(a)):
            raise OracleInputError(f"{key!r} has non-finite values")
    if N < MIN_DRAWS:
        raise OracleInputError(f"statistical mode needs at least {MIN_DRAWS} draws, the results have {N}")
    gradients = gradients_given(results, names, "statistical results")
    return N, {key: np.asarray(results[key], np.float64) for key in results}, gradients


def results_bytes(manifest, N, gradients=1):
    """Bytes of a statistical results file of ``N`` float64 draws of the per-example and batch-mean bound and
    ``gradients`` gradients: ``8 N (B + 1 + gradients * P)``, P the number of parameters."""
    n_params = sum(int(np.prod(p["shape"])) for p in manifest["parameters"])
    return 8 * int(N) * (manifest["batch"] + 1 + int(gradients) * n_params)


def default_draws(manifest):
    """:data:`DEFAULT_DRAWS`, or fewer (never below :data:`MIN_DRAWS`) so that a results file with one gradient
    stays under :data:`MAX_RESULTS_BYTES`."""
    return int(min(DEFAULT_DRAWS, max(MIN_DRAWS, MAX_RESULTS_BYTES // results_bytes(manifest, 1))))


def _refuse_if_too_large(fixture, params, n_ref, groups):
    """A one-line error before drawing when iwae-np's ``n_ref`` draws in ``groups`` groups need more memory
    (one group at a time) or time than this machine has (:mod:`iwae_np.oracle.budget`)."""
    m = fixture.manifest
    flat = flatten_tree(params)
    width = np.shape(fixture.arrays["x"])[1] + sum(np.size(v) for p, v in flat.items() if p.endswith("/b"))
    n_params = sum(np.size(v) for v in flat.values())
    per_group = -(-n_ref // groups) * m["k"] * m["batch"]
    nbytes, _ = estimate(per_group, width, n_params, copies=3 * groups)
    _, seconds = estimate(n_ref * m["k"] * m["batch"], width)
    refuse_if_too_large(f"{n_ref} reference draws in {groups} groups", nbytes, seconds,
                        "ask for fewer --reference-draws (or more --groups)", OracleInputError)


def _group_sizes(n_ref, groups):
    """``n_ref`` draws in ``groups`` groups of near-equal size."""
    return [n_ref // groups + (1 if g < n_ref % groups else 0) for g in range(groups)]


def reference_statistics(params, x, settings, keys, gradients, k, n_ref, groups, rng, variant=None,
                         gradient_functions=None):
    """iwae-np's own draws: ``{key: (mean, variance of the mean, degrees of freedom)}`` for each key in
    ``keys`` (``bound.<name>``, ``bound_mean.<name>``) and each gradient group ``grad.<name>`` (flat
    arrays by parameter). With ``variant``, the variant's values (keys ``bound.iwae``, ``bound_mean.iwae``,
    ``grad.iwae``: ``gradients`` is ``[]`` or ``["iwae"]``) instead of the fixture's quantities.
    ``gradient_functions``: ``{name: f(params, x, eps, settings)}`` to draw instead of :data:`GRADIENTS`."""
    gradient_functions = GRADIENTS if gradient_functions is None else gradient_functions
    B = np.shape(x)[0]
    values = {key: [] for key in keys}
    grad_sums = {g: [] for g in gradients}
    names = list(flatten_tree(params))
    sizes = _group_sizes(n_ref, groups)
    with np.errstate(all="ignore"):
        for n in sizes:
            eps = sample_eps(rng, params, k, n * B)  # [(k, n B, d_l)]: n draws of the batch
            if variant is None:
                xt = tile_batch(x, n)
                log_w = log_importance_weights(params, xt, eps)  # (k, nB)
                for key in keys:
                    name = key.split(".", 1)[1]
                    per_example = np.reshape(np.asarray(BOUNDS[name](log_w, settings)), (n, B))
                    values[key].append(per_example if key.startswith("bound.") else per_example.mean(axis=1))
                for g in gradients:
                    flat = flatten_tree(gradient_functions[g](params, xt, eps, settings))
                    grad_sums[g].append(np.concatenate([np.ravel(flat[p]) for p in names]))
            else:
                if gradients:
                    out, g_tree = evaluate_with_gradient(variant, params, x, eps, n)
                    flat = flatten_tree(g_tree)
                    grad_sums["iwae"].append(np.concatenate([np.ravel(flat[p]) for p in names]))
                else:
                    out = evaluate(variant, params, x, eps, n)
                for key in keys:
                    v = out["bound"] if key.startswith("bound.") else out["batch"]
                    values[key].append(np.full((n, B), np.nan) if v is None else v)
    stats = {}
    with np.errstate(all="ignore"):  # (a variant's -inf bounds, no-max-shift's, have a NaN spread, as they should)
        for key, parts in values.items():
            a = np.concatenate(parts)  # (n_ref, ...) one row per draw
            stats[key] = (a.mean(axis=0), a.var(axis=0, ddof=1) / len(a), len(a) - 1)
        for g, parts in grad_sums.items():
            a, n = np.stack(parts), np.array(sizes, float)[:, None]  # (G, P) group means, (G, 1) their sizes
            mean_ = np.sum(n * a, axis=0) / n.sum()
            # the variance of the overall mean sum_g n_g a_g / n_ref, with Var(a_g) = s^2 / n_g estimated from
            # the spread of the group means: s^2 = sum_g n_g (a_g - mean)^2 / (G - 1)
            var_of_mean = np.sum(n * (a - mean_) ** 2, axis=0) / (len(a) - 1) / n.sum()
            stats[f"grad.{g}"] = (mean_, var_of_mean, len(a) - 1)
    return stats


def _candidate_statistics(draws, keys, gradients, names):
    stats = {}
    for key in keys:
        a = draws[key]
        stats[key] = (a.mean(axis=0), a.var(axis=0, ddof=1) / len(a), len(a) - 1)
    for g in gradients:
        a = np.concatenate([np.reshape(draws[grad_key(g, p)], (len(draws[grad_key(g, p)]), -1)) for p in names], axis=1)
        stats[f"grad.{g}"] = (a.mean(axis=0), a.var(axis=0, ddof=1) / len(a), len(a) - 1)
    return stats


def _coordinate_names(key, params, B):
    if key.startswith("grad."):
        return [f"{key}.{p.replace('/', '.')}[{', '.join(map(str, i))}]" for p, v in flatten_tree(params).items()
                for i in np.ndindex(np.shape(v))]
    return [key] if key.startswith("bound_mean.") else [f"{key}[{b}]" for b in range(B)]


def rounding_floor(key, mean_r, param_sizes, tolerance):
    r"""Per coordinate, the difference of means that floating-point rounding alone can make:
    :math:`rtol \cdot \max_j |\bar r_j| + atol` over the coordinate's array (a bound's examples, or one parameter
    array of a gradient), with the fixture's tolerance (section 7's rule). Two correct implementations differ by
    rounding even where a coordinate barely varies between draws (``p_x/logits/b`` on the -1e4 fixture varies
    by 1e-16 and differs by 1e-13 between frameworks): without the floor Welch's test calls that a bias."""
    mean_r = np.atleast_1d(np.abs(np.asarray(mean_r, float)))
    if not key.startswith("grad."):
        return np.full(mean_r.shape, tolerance["rtol"] * np.max(mean_r) + tolerance["atol"])
    out = np.empty_like(mean_r)
    start = 0
    for size in param_sizes:
        part = mean_r[start:start + size]
        out[start:start + size] = tolerance["rtol"] * np.max(part, initial=0.0) + tolerance["atol"]
        start += size
    return out


def split_by_network(coordinate_names, z, threshold):
    """``(by_network, by_layer)``: :class:`SplitZ` of the coordinates of each network (``q_h1``, ``p_x``, ...)
    and of each layer (``q_h1/hidden_0``), from the coordinates' names ``grad.<name>.<net>.<layer>.<W|b>[i]``
    and their z-scores. Which network and layer a gradient's disagreement sits in (issue 19)."""
    by_network, by_layer = {}, {}
    for part, key_of in ((by_network, lambda n: n.split(".")[2]),
                         (by_layer, lambda n: "/".join(n.split(".")[2:4]))):
        groups = {}
        for i, name in enumerate(coordinate_names):
            groups.setdefault(key_of(name), []).append(i)
        for group, idx in groups.items():
            zs = z[idx]
            worst = idx[int(np.argmax(zs))]
            part[group] = SplitZ(len(idx), int(np.sum(zs > threshold)), float(z[worst]), coordinate_names[worst])
    return by_network, by_layer


def _merge_splits(splits, key_of):
    out = {}
    for name, s in splits.items():
        group = key_of(name)
        if group not in out or s.max_abs_z > out[group].max_abs_z:
            worst, max_z = s.worst, s.max_abs_z
        else:
            worst, max_z = out[group].worst, out[group].max_abs_z
        prev = out.get(group, SplitZ(0, 0, 0.0, ""))
        out[group] = SplitZ(prev.coordinates + s.coordinates, prev.rejected + s.rejected, max_z, worst)
    return out


def _power(ref, floor, threshold, target, N, n_ref):
    """``(noise floor, smallest bias detected, recommended N, note)`` for a candidate with iwae-np's own spread.

    The power is a statement about an honest candidate, so it uses the reference's spread on both sides
    (``se_j^2 = s_j^2 / N + s_j^2 / n_ref``), never the candidate's (a candidate scaled by 1000 would make its
    own spread, and the N it "needs", absurd). Coordinates whose spread is below their rounding floor carry no
    power statement (they are checked to rounding: any bias beyond it is caught)."""
    mr, vr = np.atleast_1d(ref[0]), np.atleast_1d(ref[1])
    se = np.sqrt(vr * (n_ref / N + 1.0))  # (vr is the variance of the reference's mean over n_ref draws)
    mu = np.abs(mr)
    varies = (se > floor) & (mu > 0)
    if not np.any(varies):
        return None, None, None, ("power not computable: every coordinate varies between draws by less than its "
                                  "rounding floor, so it is checked to rounding (any bias beyond it is caught)")
    rel = se[varies] / mu[varies]
    noise_floor = float(np.min(rel))
    bias = (threshold + scipy.stats.norm.isf(1 - POWER)) * noise_floor
    recommended = max(MIN_DRAWS, int(math.ceil(N * (bias / target) ** 2)))
    note = "" if np.all(varies) else (f"{int(np.sum(~varies))} of {varies.size} coordinates vary by less than "
                                      "their rounding floor and are left out of the power")
    return noise_floor, bias, recommended, note


def _test(key, cand, ref, threshold, target, N, n_ref, names, floor):
    (ma, va, dfa), (mr, vr, dfr) = cand, ref
    z = np.atleast_1d(welch_z(ma, va, dfa, mr, vr, dfr, floor))
    noise_floor, bias, recommended, note = _power(ref, floor, threshold, target, N, n_ref)
    worst = int(np.argmax(z))
    by_network, by_layer = split_by_network(names, z, threshold) if key.startswith("grad.") else ({}, {})
    return QuantityTest(key, z.size, float(z[worst]), names[worst], noise_floor, bias, recommended,
                        int(np.sum(z > threshold)), note, by_network, by_layer)


def statistical_check(fixture, results, alpha=0.01, reference_draws=None, groups=50, seed=0, target=0.01,
                      diagnose=True):
    """Compare the candidate's draws (a dict or a path) with iwae-np's own; a :class:`StatisticalReport`.

    ``reference_draws`` defaults to 4 N; ``groups`` of them give the reference gradient's spread; ``seed``
    seeds iwae-np's draws (``numpy.random.default_rng``); ``target`` is the relative bias the recommended N
    is for. When a coordinate rejects, each known variant (:data:`~iwae_np.oracle.variants.VARIANTS`) is
    drawn (min(reference_draws, N) draws in :data:`DIAGNOSIS_GROUPS` groups) and tested against the
    candidate's ``iwae`` quantities.
    """
    if not isinstance(fixture, Fixture):
        fixture = load_fixture(fixture)
    if not isinstance(results, dict):
        results = load_results(results)
    check_real_arrays(results, "statistical results")
    if not 0 < alpha < 1:
        raise OracleInputError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < target < math.inf:
        raise OracleInputError(f"the target relative bias must be a finite number > 0, got {target}")
    if isinstance(groups, bool) or int(groups) != groups or groups < 2:
        raise OracleInputError(f"groups must be an integer >= 2 (the reference gradient's spread is estimated "
                               f"from the spread of the group means), got {groups}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise OracleInputError(f"the seed of iwae-np's draws must be an integer >= 0, got {seed}")
    m = fixture.manifest
    k, B = m["k"], m["batch"]
    if k < 2:
        raise OracleInputError(f"statistical mode needs a fixture with k > 1 (this one has k = {k}): at k = 1 "
                               "IWAE and the VAE coincide")
    N, draws, gradients = read_draws(fixture, results)
    n_ref = 4 * N if reference_draws is None else int(reference_draws)
    groups = min(int(groups), n_ref)
    if n_ref < MIN_DRAWS:
        raise OracleInputError(f"reference_draws must be at least {MIN_DRAWS}, got {n_ref}")
    params, x, _ = fixture.model_inputs()
    names = list(flatten_tree(params))
    _refuse_if_too_large(fixture, params, n_ref, groups)
    settings = verified_settings(fixture)
    keys = [key for key in draws if key.startswith("bound")]
    cand = _candidate_statistics(draws, keys, gradients, names)
    ref = reference_statistics(params, x, settings, keys, gradients, k, n_ref, groups,
                               np.random.default_rng(seed))
    m_total = sum(np.size(cand[key][0]) for key in cand)
    threshold = float(scipy.stats.norm.isf(alpha / (2 * m_total)))
    sizes = [np.size(v) for v in flatten_tree(params).values()]
    tol = fixture.tolerance
    floors = {key: rounding_floor(key, ref[key][0], sizes, tol) for key in cand}
    tests = [_test(key, cand[key], ref[key], threshold, target, N, n_ref, _coordinate_names(key, params, B),
                   floors[key]) for key in cand]
    tests, conventions = _recognise_surrogates(tests, cand, params, x, settings, k, n_ref, seed, threshold,
                                               target, N, B, sizes, tol)
    report = StatisticalReport(m.get("name", ""), k, N, n_ref, groups, alpha, threshold, target, tests,
                               conventions=conventions)
    if diagnose and not report.passed:
        report.diagnosis = diagnose_statistical(fixture, cand, min(n_ref, N), min(groups, DIAGNOSIS_GROUPS), seed,
                                                threshold, rejected=[t.key for t in tests if t.rejected])
        explained = {"grad.iwae"} if any(v.matches for v in report.diagnosis) else set()  # (a variant explains it)
        report.gradient_diagnosis = diagnose_gradients_statistical(
            fixture, cand, [t for t in tests if t.rejected and t.key.startswith("grad.") and t.key not in explained],
            min(n_ref, N), min(groups, DIAGNOSIS_GROUPS), seed, threshold, settings)
    return report


def _recognise_surrogates(tests, cand, params, x, settings, k, n_ref, seed, threshold, target, N, B, sizes, tol):
    """Bounds that the check rejects but whose draws agree with a common surrogate's
    (:mod:`~iwae_np.oracle.surrogates`): tested against that surrogate instead, at the same threshold;
    returns ``(tests, conventions)``, one sentence per such key."""
    out, conventions = [], []
    for t in tests:
        if t.rejected and surrogate_key_name(t.key):
            ref = surrogate_reference(params, x, settings, t.key, k, n_ref, np.random.default_rng([seed, 1]))
            alt = _test(t.key, cand[t.key], ref, threshold, target, N, n_ref, _coordinate_names(t.key, params, B),
                        rounding_floor(t.key, ref[0], sizes, tol))
            if not alt.rejected:
                conventions.append(f"convention: {t.key} is {SURROGATES[surrogate_key_name(t.key)][1]} (max |z| "
                                   f"{alt.max_abs_z:.2f} against it, {t.max_abs_z:.2f} against the bound); "
                                   "tested against the surrogate")
                t = alt
        out.append(t)
    return out, conventions
def diagnose_gradients_statistical(fixture, cand, rejected_tests, n_ref, groups, seed, threshold, settings):
    """:class:`~iwae_np.oracle.diagnosis.GradientPartMatch` for the theta and phi part of each rejected gradient
    (``rejected_tests``, :class:`QuantityTest` of ``grad.<name>``): a part that the check rejected *matches* a
    known gradient (:func:`~iwae_np.oracle.diagnosis.known_gradient_functions`) when none of its coordinates
    rejects against that gradient's own draws (``n_ref`` in ``groups`` groups, with the rounding floor)."""
    if not rejected_tests:
        return []
    m = fixture.manifest
    params, x, _ = fixture.model_inputs()
    flat = flatten_tree(params)
    sizes, tol = [np.size(v) for v in flat.values()], fixture.tolerance
    roles = np.concatenate([np.full(np.size(v), role_of(network_of(p))) for p, v in flat.items()])
    functions = known_gradient_functions(settings, m["k"], m["batch"])
    matches = {(t.key, role): [] for t in rejected_tests for role in ("theta", "phi")}
    for name, (_, fn) in functions.items():
        ref = reference_statistics(params, x, settings, [], ["known"], m["k"], n_ref, groups,
                                   np.random.default_rng(seed),
                                   gradient_functions={"known": lambda p, xt, eps, s, fn=fn: fn(p, xt, eps)})["grad.known"]
        floor = rounding_floor("grad.known", ref[0], sizes, tol)
        for t in rejected_tests:
            (ma, va, dfa), (mr, vr, dfr) = cand[t.key], ref
            z = np.atleast_1d(welch_z(ma, va, dfa, mr, vr, dfr, floor))
            for role in ("theta", "phi"):
                if np.all(z[roles == role] <= threshold):
                    matches[t.key, role].append(name)
    return [GradientPartMatch(t.key.split(".", 1)[1], role, t.by_role[role].rejected == 0,
                              [] if t.by_role[role].rejected == 0 else matches[t.key, role])
            for t in rejected_tests for role in ("theta", "phi") if role in t.by_role]


def diagnose_statistical(fixture, cand, n_ref, groups, seed, threshold, rejected=(), variants=VARIANTS):
    """:class:`~iwae_np.oracle.diagnosis.VariantMatch` per variant: the largest |z| of the candidate's
    ``bound.iwae``, ``bound_mean.iwae`` and ``grad.iwae`` against the variant's own draws, best first.

    ``rejected``: the candidate's quantities the check rejected; IWAE itself is not a match when one of its
    own quantities is among them (the check had more groups of reference draws than the diagnosis). A
    variant whose draws give IWAE's values to 1e-10 (a thresholded softplus where no logit exceeds 20)
    cannot be told from it and is not reported as a match."""
    m = fixture.manifest
    params, x, _ = fixture.model_inputs()
    keys = [key for key in ("bound.iwae", "bound_mean.iwae") if key in cand]
    gradients = ["iwae"] if "grad.iwae" in cand else []
    if not keys and not gradients:
        return []
    L, k = m["architecture"]["n_stochastic_layers"], m["k"]
    sizes, tol = [np.size(v) for v in flatten_tree(params).values()], fixture.tolerance
    out, reference = [], None
    for v in variants:
        if not v.applies_to(L, k):
            continue
        form = v.statistical_form()
        ref = reference_statistics(params, x, m["settings"], keys, gradients, form.samples(k), n_ref, groups,
                                   np.random.default_rng(seed), variant=form)
        reference = ref if v.name == "iwae" else reference
        errors, note = {}, ""
        if v.name != "iwae" and reference is not None and all(
                np.allclose(ref[key][0], reference[key][0], rtol=1e-10, atol=0) for key in ref):
            note = "indistinguishable from iwae on this input"  # the same draws give the same values
        if v.name == "iwae" and any(key in rejected for key in ref):
            note = f"rejected by the check ({', '.join(key for key in ref if key in rejected)})"
        for key in keys + [f"grad.{g}" for g in gradients]:
            if np.all(np.isnan(ref[key][0])):
                note = "no per-example bound (one bound over the batch)"
                continue
            (ma, va, dfa), (mr, vr, dfr) = cand[key], ref[key]
            floor = rounding_floor(key, mr, sizes, tol)
            errors[key] = float(np.max(np.atleast_1d(welch_z(ma, va, dfa, mr, vr, dfr, floor))))
        ok = bool(errors) and all(e <= threshold for e in errors.values()) and not note
        out.append(VariantMatch(v.name, v.description, errors, ok, note))
    out.sort(key=lambda r: (not r.matches, bool(r.note), r.worst))
    return out

