r"""Replay mode: check an implementation that draws its own noise, exactly, from the latents it drew.

The candidate evaluates a fixture's parameters and ``x`` with its own noise and writes its latents
``h.h<l> (k, B, d_l)``, its ``log_w (k, B)``, bounds (``bound.<name> (B,)`` and/or ``bound_mean.<name> ()``)
and optionally gradients (``grad.<name>.<parameter>``) and terms. iwae-np recovers the noise layer by
layer with its own recognition networks evaluated at the candidate's latents (paper section 2),

.. math::
    \epsilon_1 = \frac{h_1 - \mu_1(x)}{\sigma_1(x)}, \qquad
    \epsilon_l = \frac{h_l - \mu_l(h_{l-1})}{\sigma_l(h_{l-1})},

recomputes every quantity from that noise and compares with the fixture's tolerance. Two checks say
whether the latents can have come from ``h = mu + sigma * eps`` with standard normal ``eps`` at all:
recomputing ``h`` from the recovered noise must give the candidate's ``h`` back (it does not when sigma
underflows or the latents are not finite), and the recovered noise must look N(0, 1) (a wrong sigma
convention or transposed weights make it shifted or scaled): per layer and per example (the noise of one
example is assumed independent over its samples and units, nothing across examples), its mean (z test), its
sum of squares (chi-square) and its distribution (Kolmogorov-Smirnov), each at a false-alarm rate of
:data:`EPS_ALPHA` split over the layers, examples and tests.
"""
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from ..model import NonFiniteLogWeightError
from .compare import check_tolerance, compare_arrays
from .diagnosis import diagnose_exact, diagnose_gradients
from .format import Fixture, OracleInputError, check_real_arrays, load_fixture, load_results
from .keys import BOUND_NAMES, GRADIENT_NAMES, latent_key, manifest_output_shapes
from .localise import localise
from .quantities import compute_outputs, default_settings, gradients_given, verified_settings
from .surrogates import SURROGATES, surrogate_key_name, surrogate_value
from .variants import recover_eps

__all__ = ["EPS_ALPHA", "ReplayReport", "replay_check", "noise_statistics", "noise_statistics_per_example"]

#: Total false-alarm rate of the recovered-noise tests of one replay (split over layers and the three tests).
EPS_ALPHA = 1e-6


@dataclass
class ReplayReport:
    """The outcome of a replay: comparison rows, the recovered noise's statistics, problems found before
    the comparison (named after a quantity), and the diagnosis when anything disagrees."""
    name: str
    k: int
    k_candidate: int
    rows: list
    noise: list
    problems: list = field(default_factory=list)
    diagnosis: list = field(default_factory=list)
    conventions: list = field(default_factory=list)
    gradient_diagnosis: list = field(default_factory=list)

    @property
    def where(self):
        """:class:`~iwae_np.oracle.localise.Where`: which network, layer and term disagree."""
        return localise(self.rows)

    @property
    def failed_keys(self):
        return [p.split(":")[0] for p in self.problems] + [r.key for r in self.rows if not r.passed]

    @property
    def passed(self):
        return not self.failed_keys


def noise_statistics(eps_l, alpha):
    r"""Tests of ``eps_l`` against N(0, 1): ``{n, mean, std, max_abs, p_mean, p_var, p_ks, normal}``.

    Mean: :math:`z = \bar\epsilon \sqrt n`; spread: :math:`\sum \epsilon^2 \sim \chi^2_n` (two-sided);
    shape: Kolmogorov-Smirnov. ``normal`` is False when a p-value is below ``alpha / 3``.
    """
    e = np.asarray(eps_l, dtype=np.float64).ravel()
    n = e.size
    if not np.all(np.isfinite(e)):
        return {"n": n, "mean": np.nan, "std": np.nan, "max_abs": np.inf, "p_mean": 0.0, "p_var": 0.0,
                "p_ks": 0.0, "normal": False}
    s2 = float(np.sum(e * e))
    p_mean = float(2 * scipy.stats.norm.sf(abs(np.mean(e)) * np.sqrt(n)))
    p_var = float(2 * min(scipy.stats.chi2.sf(s2, n), scipy.stats.chi2.cdf(s2, n)))
    p_ks = float(scipy.stats.kstest(e, "norm").pvalue)
    return {"n": n, "mean": float(np.mean(e)), "std": float(np.sqrt(s2 / n)), "max_abs": float(np.max(np.abs(e))),
            "p_mean": p_mean, "p_var": p_var, "p_ks": p_ks, "normal": min(p_mean, p_var, p_ks) >= alpha / 3}


def noise_statistics_per_example(eps_l, alpha):
    """:func:`noise_statistics` of each example's noise ``eps_l[:, b, :]`` (k samples x d units), at a total
    false-alarm rate ``alpha`` over the examples; the statistics of the example least like N(0, 1), with
    ``example`` (its index) and ``examples`` (B) added.

    Replay assumes the noise of one example is independent standard normal over its samples and units, and
    nothing across examples: a candidate may share one noise draw per sample index across the batch (each
    example's estimate is then still unbiased), which a test pooling the examples would call non-normal."""
    eps_l = np.asarray(eps_l, dtype=np.float64)  # (k, B, d)
    B = eps_l.shape[1]
    per_example = [noise_statistics(eps_l[:, b, :], alpha / B) for b in range(B)]
    b = min(range(B), key=lambda i: min(per_example[i]["p_mean"], per_example[i]["p_var"], per_example[i]["p_ks"]))
    return {**per_example[b], "example": b, "examples": B}


def _noise_problem(l, st, values_agree):
    """The message of a layer whose recovered noise does not look independent N(0, 1) within an example."""
    head = (f"{latent_key(l)}: the recovered noise eps = (h - mu) / sigma of example {st['example']} does not look "
            f"N(0, 1) (mean {st['mean']:.3g}, std {st['std']:.3g}, max |eps| {st['max_abs']:.3g}, p-values: mean "
            f"{st['p_mean']:.1e}, spread {st['p_var']:.1e}, shape {st['p_ks']:.1e}; each example tested on its own)")
    if values_agree:
        # iwae-np's conventions reproduce the candidate's own log w at these latents: a wrong sigma or dense-layer
        # convention would not, so the conventions are not what is wrong
        return (head + ": every value the candidate gave agrees at these latents, so its conventions are iwae-np's; "
                "its noise is not independent standard normal over the samples and units of an example (replay "
                "assumes that, and nothing across examples)")
    return (head + ": the latents were not drawn as h = mu + exp(log_sigma) * eps with this fixture's parameters; "
            "check the sigma convention (log_sigma is a log standard deviation) and the dense layer (y = x @ W + b, "
            "W of shape (n_in, n_out), the transpose of torch.nn.Linear.weight)")


def _read_candidate(fixture, results):
    """Validate the replay results' keys and shapes; returns ``(h, k_candidate, gradient names)``."""
    m = fixture.manifest
    L, B = m["architecture"]["n_stochastic_layers"], m["batch"]
    dims = m["architecture"]["latent_dims"]
    names = [p["name"] for p in m["parameters"]]
    h = []
    for l in range(1, L + 1):
        key = f"h.h{l}"
        if key not in results:
            raise OracleInputError(f"replay results lack the latents {key!r} (k, {B}, {dims[l - 1]}): replay "
                                   "recovers the noise from them")
        a = np.asarray(results[key])
        if a.ndim != 3 or a.shape[1:] != (B, dims[l - 1]) or a.shape[0] < 1:
            raise OracleInputError(f"shape mismatch for {key!r}: results have {list(a.shape)}, expected "
                                   f"[k, {B}, {dims[l - 1]}]")
        if h and a.shape[0] != h[0].shape[0]:
            raise OracleInputError(f"{key!r} has {a.shape[0]} samples but 'h.h1' has {h[0].shape[0]}")
        if not np.all(np.isfinite(a)):
            raise OracleInputError(f"{key!r} has non-finite values")
        h.append(a.astype(np.dtype(m["dtype"])))
    kc = h[0].shape[0]
    expected = manifest_output_shapes(m, kc)  # a replay file holds a fixture's outputs at its own k
    unknown = sorted(set(results) - set(expected))
    if unknown:
        raise OracleInputError(f"replay results hold keys that are not replay quantities: {unknown[:4]}"
                               f"{' ...' if len(unknown) > 4 else ''} (see docs/oracle.md, replay mode)")
    if "log_w" not in results:
        raise OracleInputError(f"replay results lack 'log_w' ({kc}, {B})")
    if not any(key.startswith(("bound", "grad.")) for key in results):
        # a bound or, for a library that exposes only a loss (a surrogate, or PIWAE's two), gradients alone
        raise OracleInputError("replay results hold no bound and no gradient: give bound.<name> (per example) "
                               f"or bound_mean.<name> for a name in {list(BOUND_NAMES)}, or grad.<name>.* for every "
                               f"parameter, a name in {list(GRADIENT_NAMES)}")
    for key, shape in expected.items():
        if key in results and np.shape(results[key]) != shape:
            raise OracleInputError(f"shape mismatch for {key!r}: results have {list(np.shape(results[key]))}, "
                                   f"expected {list(shape)}")
    gradients = gradients_given(results, names, "replay results")
    return h, kc, gradients


def _recognise_surrogates(rows, results, log_w, settings):
    """Rows of bounds that disagree but are a common surrogate's value (:mod:`~iwae_np.oracle.surrogates`),
    compared with that surrogate instead; returns ``(rows, conventions)``, one sentence per such key."""
    out, conventions = [], []
    for row in rows:
        if not row.passed and surrogate_key_name(row.key):
            with np.errstate(all="ignore"):
                candidate = compare_arrays(results[row.key], surrogate_value(row.key, log_w, settings),
                                           row.rtol, row.atol, row.key)
            if candidate.passed:
                conventions.append(f"convention: {row.key} is {SURROGATES[surrogate_key_name(row.key)][1]} "
                                   f"(agrees with it to {candidate.max_rel_error:.1e}; "
                                   f"{row.max_rel_error:.1e} from the bound); compared with the surrogate")
                row = candidate
        out.append(row)
    return out, conventions


def replay_check(fixture, results, rtol=None, atol=None, diagnose=True):
    """Replay the candidate's results (a dict or a path) on ``fixture``; a :class:`ReplayReport`."""
    if not isinstance(fixture, Fixture):
        fixture = load_fixture(fixture)
    if not isinstance(results, dict):
        results = load_results(results)
    check_real_arrays(results, "replay results")
    check_tolerance(rtol, atol)
    m = fixture.manifest
    tol = fixture.tolerance
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    params, x, _ = fixture.model_inputs()
    h, kc, gradients = _read_candidate(fixture, results)
    k = m["k"]
    problems = []
    if kc != k:
        off = {-1: " (k off by one: num_particles one too small?)", 1: " (k off by one: one sample too many?)"}
        problems.append(f"h.h1: the candidate drew k = {kc} samples per example, the fixture asks for k = {k}"
                        f"{off.get(kc - k, '')}; the rest is replayed at the candidate's k = {kc}")
    with np.errstate(all="ignore"):  # (latents far too large overflow here; said below, not as a warning)
        eps = recover_eps(params, x, h)
        noise = [noise_statistics_per_example(e, EPS_ALPHA / len(eps)) for e in eps]
    settings = dict(verified_settings(fixture))
    if kc != k:
        for key in ("miwae_M", "piwae_M"):
            if kc % settings[key]:
                settings[key] = default_settings(kc)[key]
    with np.errstate(all="ignore"):
        try:
            outputs = compute_outputs(params, x, eps, settings, gradients=gradients)
        except NonFiniteLogWeightError:
            # (not the training advice of the model's message: the latents are the candidate's, not a model's)
            worst = max(range(len(eps)), key=lambda l: float(np.max(np.abs(eps[l]))))
            raise OracleInputError(
                f"{latent_key(worst + 1)}: the latents are so far from q's mean (recovered noise up to "
                f"|eps| = {float(np.max(np.abs(eps[worst]))):.3g}) that the log densities overflow "
                f"{m['dtype']}: they were not drawn as h = mu + exp(log_sigma) * eps with this fixture's "
                "parameters (check their scale and units)") from None
    rows = [compare_arrays(results[key], outputs[key], rtol, atol, key) for key in outputs if key in results]
    rows, conventions = _recognise_surrogates(rows, results, outputs["log_w"], settings)
    values_agree = all(r.passed for r in rows)
    problems += [_noise_problem(l, st, values_agree) for l, st in enumerate(noise, start=1) if not st["normal"]]
    report = ReplayReport(m.get("name", ""), k, kc, rows, noise, problems, conventions=conventions)
    if diagnose and not report.passed:
        report.diagnosis = diagnose_exact(params, x, results, h=h, rtol=rtol)
        explained = {"iwae"} if any(v.matches for v in report.diagnosis) else set()  # (a variant explains IWAE's)
        report.gradient_diagnosis = diagnose_gradients(params, x, results, eps, settings, rtol=rtol, atol=atol,
                                                       objectives=[g for g in report.where.gradients
                                                                   if g not in explained])
    return report
