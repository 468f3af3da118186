r"""Known mistaken IWAE implementations, computed with iwae_np's own machinery, for diagnosing a failed check.

Each :class:`Variant` is the paper's IWAE (eq. 8 and 14) with one mistake that public implementations have
made. A variant is built from four parts, each a small function of iwae_np's model:

- ``transform``: the parameters the mistaken model effectively uses (``log-variance``: every ``log_sigma``
  head read as a log variance, ``sigma = exp(log_sigma / 2)``; ``transposed-W``: every dense ``W`` loaded
  as ``torch.nn.Linear.weight`` without a transpose). The map is linear, written with autograd's numpy,
  so the variant's gradient with respect to the fixture's parameters is autograd's through it;
- ``log_w``: the log weights at the noise (``thresholded-softplus``: softplus(l) replaced by l above
  l = 20; ``analytic-kl``: ``log p(x|h_i) - KL(q(h|x) || p(h))``, one stochastic layer only);
- ``bound``: per-example values from ``log_w`` (IWAE, the k-sample VAE estimate, Renyi(1/2), a
  normalizer ``log(k -+ 1)``, a logsumexp without the max shift) or one joint bound over the batch;
- ``reduce`` and ``gradient``: the batch value the candidate reports and differentiates (the mean, the
  sum, minus the mean), and the gradient: of that value, or the surrogate whose normalized weights are
  not detached, or STL's.

Shapes: ``x (B, D)``; noise ``eps[l] (k, n B, d_l)`` for ``n`` independent draws of the batch (draw ``j``
holds examples ``j B .. j B + B - 1``); log weights ``(k, n B)``; per-example bounds ``(n, B)``; batch
values ``(n,)``. :func:`evaluate` returns those, :func:`mean_gradient` the gradient of the batch value
averaged over the ``n`` draws.
"""
import math
from dataclasses import dataclass, replace

import autograd.numpy as anp
import numpy as np
from autograd import grad
from autograd.tracer import getval

from ..bounds import iwae_bound, normalized_weights, renyi_bound, vae_bound
from ..estimators import stl_gradient
from ..model import gaussian_layer, log_weight_terms, recognition_stats
from ..networks import dense, tanh_mlp
from ..special import log_mean_exp, mean

__all__ = ["Variant", "VARIANTS", "REFERENCE", "get_variant", "evaluate", "mean_gradient", "recover_eps", "transform_params",
           "evaluate_with_gradient",
           "tile_batch", "SOFTPLUS_THRESHOLD"]

#: ``torch.nn.functional.softplus``'s default: it returns l itself where ``l > 20``.
SOFTPLUS_THRESHOLD = 20.0


@dataclass(frozen=True)
class Variant:
    """One known implementation of IWAE, right (``iwae``) or mistaken; see the module docstring."""
    name: str
    description: str
    transform: str = "none"        # none | log-variance | transposed-W
    log_w: str = "model"           # model | thresholded-softplus | analytic-kl
    bound: str = "iwae"            # iwae | vae | renyi-0.5 | normalizer-k-1 | normalizer-k+1 | no-max-shift | joint
    reduce: str = "mean"           # mean | sum | minus-mean
    gradient: str = "autodiff"     # autodiff | not-detached | stl
    k_offset: int = 0              # samples the mistaken code draws: k + k_offset (statistical mode)

    def samples(self, k):
        """How many samples per example this variant draws when asked for ``k``."""
        return k + self.k_offset

    def statistical_form(self):
        """The variant as the statistical mode draws it: ``k + k_offset`` samples and the plain IWAE bound of
        them (on given noise, ``k -+ 1`` shows as the normalizer ``log(k -+ 1)`` instead)."""
        return replace(self, bound="iwae") if self.k_offset else self

    def applies_to(self, n_stochastic, k):
        """Whether the variant is defined for this architecture and ``k``."""
        if self.log_w == "analytic-kl" and n_stochastic != 1:
            return False
        return self.samples(k) >= 1 and not (self.bound == "normalizer-k-1" and k < 2)


#: The right implementation, against which the others are mistakes.
REFERENCE = Variant("iwae", "the IWAE bound and its gradient (paper eq. 8 and 14)")

VARIANTS = (
    REFERENCE,
    Variant("vae", "the k-sample VAE estimate (1/k) sum_i log w_i where IWAE was meant", bound="vae"),
    Variant("sum-over-batch", "the sum over the batch where the mean was meant (the batch value and gradient B times "
            "too large)", reduce="sum"),
    Variant("sign", "the loss (minus the bound) where the bound was meant, or an ascent/descent sign error",
            reduce="minus-mean"),
    Variant("joint-batch-bound", "one bound over the whole batch, logmeanexp_i sum_b log w_ib (the batch in the "
            "event dimensions instead of a data plate), reported per example as that bound / B", bound="joint"),
    Variant("k-1", "k off by one: k - 1 samples (num_particles one too small); on given noise, log(k - 1) as the "
            "normalizer", bound="normalizer-k-1", k_offset=-1),
    Variant("k+1", "k off by one: k + 1 samples; on given noise, log(k + 1) as the normalizer",
            bound="normalizer-k+1", k_offset=1),
    Variant("not-detached", "normalized weights not detached: the gradient of sum_i w~_i log w_i with w~ live "
            "(the value reported is the IWAE bound)", gradient="not-detached"),
    Variant("analytic-kl", "an analytic KL with k > 1: logmeanexp_i [log p(x|h_i)] - KL(q(h|x) || p(h)) "
            "(one stochastic layer)", log_w="analytic-kl"),
    Variant("log-variance", "log_sigma read as a log variance: sigma = exp(log_sigma / 2) in every Gaussian",
            transform="log-variance"),
    Variant("transposed-W", "every W loaded as torch.nn.Linear.weight without a transpose: y = x @ "
            "W.reshape(n_out, n_in).T + b (x @ W.T for a square W)", transform="transposed-W"),
    Variant("thresholded-softplus", "softplus(l) = l above l = 20 (torch.nn.functional.softplus's default "
            "threshold) in log p(x|h)", log_w="thresholded-softplus"),
    Variant("stl", "the STL gradient (Roeder et al. 2017) where IWAE's was meant (the value is the IWAE bound)",
            gradient="stl"),
    Variant("renyi-0.5", "the Renyi bound with alpha = 0.5 where alpha = 0 (IWAE) was meant", bound="renyi-0.5"),
    Variant("no-max-shift", "log(mean(exp(log w))) without the max shift: -inf where exp(log w) underflows",
            bound="no-max-shift"),
)


def get_variant(name):
    """A :data:`VARIANTS` entry by name."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise ValueError(f"unknown variant {name!r}; choose one of {[v.name for v in VARIANTS]}")


# ---------------------------------------------------------------------------------------------
# the parts


def transform_params(variant, params):
    """The parameters the mistaken model uses, as a differentiable function of the fixture's."""
    if variant.transform == "none":
        return params
    out = {}
    for net, layers in params.items():
        out[net] = {}
        for layer, arrays in layers.items():
            W, b = arrays["W"], arrays["b"]
            if variant.transform == "log-variance" and layer == "log_sigma":
                W, b = 0.5 * W, 0.5 * b  # log sigma = (t W + b) / 2
            elif variant.transform == "transposed-W":
                n_in, n_out = np.shape(W)
                W = anp.transpose(anp.reshape(W, (n_out, n_in)))  # nn.Linear.weight (n_out, n_in) <- W's data
            out[net][layer] = {"W": W, "b": b}
    return out


def tile_batch(x, n):
    """``n`` copies of the batch one after the other: ``(B, D) -> (n B, D)``."""
    return np.tile(np.asarray(x), (int(n), 1))


def recover_eps(params, x, h):
    r"""The noise that gives the latents ``h`` under ``params``: :math:`\epsilon_l = (h_l - \mu_l) / \sigma_l`,
    layer by layer, with :math:`\mu_l, \sigma_l` of ``q(h_l | h_{l-1})`` evaluated at the given ``h_{l-1}``
    (``h_0 = x``). ``h[l] (k, B, d_l)`` -> ``[(k, B, d_l)]``."""
    stats = recognition_stats(params, np.asarray(x, dtype=np.result_type(h[0])), h)
    return [(np.asarray(h_l) - mu) * np.exp(-log_sigma) for h_l, (mu, log_sigma) in zip(h, stats)]


def _thresholded_softplus_correction(params, x, h1):
    # log p(x|h) with softplus_t(l) = l for l > 20 differs from the exact one by
    #   [x l - softplus_t(l)] - [x l - softplus(l)] = softplus(l) - l = log1p(e^-l)   (l > 20)
    logits = dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h1))  # (k, nB, D)
    above = np.asarray(getval(logits)) > SOFTPLUS_THRESHOLD
    safe = anp.where(above, logits, SOFTPLUS_THRESHOLD)  # (no log1p(e^-l) of small l on the unused branch)
    return anp.sum(anp.where(above, anp.log1p(anp.exp(-safe)), 0.0), axis=-1)


def _log_w(variant, params, x, eps):
    """``log w (k, nB)`` of the variant's model at the noise ``eps`` (params already transformed)."""
    out = log_weight_terms(params, x, eps)
    if variant.log_w == "model":
        return out["log_w"]
    if variant.log_w == "thresholded-softplus":
        return out["log_w"] + _thresholded_softplus_correction(params, x, out["h"][0])
    if variant.log_w == "analytic-kl":
        # KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum_j [sigma_j^2 + mu_j^2 - 1 - 2 log sigma_j]
        mu, log_sigma = gaussian_layer(params["q_h1"], x)  # (nB, d)
        kl = 0.5 * anp.sum(anp.exp(2 * log_sigma) + mu * mu - 1.0 - 2 * log_sigma, axis=-1)  # (nB,)
        return out["terms"]["log_p_x_given_h1"] - kl
    raise ValueError(f"unknown log_w part {variant.log_w!r}")


def _per_example(variant, log_w):
    """Per-example bound ``(nB,)`` from ``log_w (k, nB)``, or None for a joint bound."""
    k = np.shape(log_w)[0]
    if variant.bound == "iwae":
        return iwae_bound(log_w)
    if variant.bound == "vae":
        return vae_bound(log_w)
    if variant.bound == "renyi-0.5":
        return renyi_bound(log_w, 0.5)
    if variant.bound in ("normalizer-k-1", "normalizer-k+1"):
        k_wrong = k - 1 if variant.bound == "normalizer-k-1" else k + 1
        return iwae_bound(log_w) + math.log(k) - math.log(k_wrong)
    if variant.bound == "no-max-shift":
        with np.errstate(divide="ignore"):
            return anp.log(mean(anp.exp(log_w), axis=0))
    if variant.bound == "joint":
        return None
    raise ValueError(f"unknown bound part {variant.bound!r}")


def _batch_value(variant, log_w, per_example, n):
    """The batch value of each draw ``(n,)``: what the candidate reports as the batch-mean bound."""
    k = np.shape(log_w)[0]
    if per_example is None:  # joint: logmeanexp_i sum_b log w_ib, per example
        draws = anp.reshape(log_w, (k, n, -1))  # (k, n, B)
        return log_mean_exp(anp.sum(draws, axis=2), axis=0) / np.shape(draws)[2]
    by_draw = anp.reshape(per_example, (n, -1))  # (n, B)
    if variant.reduce == "mean":
        return mean(by_draw, axis=1)
    if variant.reduce == "sum":
        return anp.sum(by_draw, axis=1)
    if variant.reduce == "minus-mean":
        return -mean(by_draw, axis=1)
    raise ValueError(f"unknown reduce part {variant.reduce!r}")


def _signed_per_example(variant, per_example):
    if per_example is None:
        return None
    return -per_example if variant.reduce == "minus-mean" else per_example


def _values(variant, log_w, n):
    """``{"log_w": (k, n, B), "bound": (n, B) or None, "batch": (n,)}`` from the variant's log weights (k, nB)."""
    per_example = _per_example(variant, log_w)
    batch = _batch_value(variant, log_w, per_example, n)
    signed = _signed_per_example(variant, per_example)
    k = np.shape(log_w)[0]
    return {"log_w": np.reshape(np.asarray(log_w), (k, n, -1)),
            "bound": None if signed is None else np.reshape(np.asarray(signed), (n, -1)),
            "batch": np.asarray(batch)}


def evaluate(variant, params, x, eps, n=1):
    """Values of the variant at the noise ``eps`` of ``n`` draws (``x`` the fixture's ``(B, D)`` batch):
    ``{"log_w": (k, n, B), "bound": (n, B) or None, "batch": (n,)}`` as numpy arrays."""
    with np.errstate(divide="ignore"):
        return _values(variant, _log_w(variant, transform_params(variant, params), tile_batch(x, n), eps), n)


def _objective(variant, x, eps, n, seen):
    def f(params):
        log_w = _log_w(variant, transform_params(variant, params), x, eps)
        seen["log_w"] = getval(log_w)  # (the values come with the gradient's forward pass)
        if variant.gradient == "not-detached":  # sum_i w~_i log w_i with w~ = softmax(log w), live
            per_example = anp.sum(normalized_weights(log_w) * log_w, axis=0)
            surrogate = Variant("surrogate", "", reduce=variant.reduce)
            return mean(_batch_value(surrogate, log_w, per_example, n))
        return mean(_batch_value(variant, log_w, _per_example(variant, log_w), n))
    return f


def evaluate_with_gradient(variant, params, x, eps, n=1):
    """``(values, gradient)``: :func:`evaluate`'s values and the gradient of the variant's batch value with
    respect to the fixture's parameters, averaged over the ``n`` draws in ``eps`` (a tree like ``params``),
    from one forward pass."""
    xt = tile_batch(x, n)
    if variant.gradient == "stl":  # the gradient of the mean over all n B examples
        return evaluate(variant, params, x, eps, n), stl_gradient(params, xt, eps)
    seen = {}
    with np.errstate(divide="ignore"):
        g = grad(_objective(variant, xt, eps, n, seen))(params)
        return _values(variant, seen["log_w"], n), g


def mean_gradient(variant, params, x, eps, n=1):
    """The gradient of :func:`evaluate_with_gradient` alone."""
    return evaluate_with_gradient(variant, params, x, eps, n)[1]
