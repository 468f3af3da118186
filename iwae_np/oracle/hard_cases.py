"""The oracle's hard cases: constructions where a naive implementation loses digits or gets NaN."""
import numpy as np

from ..bounds import normalized_weights
from ..model import log_weight_terms
from ..networks import dense, tanh_mlp

__all__ = ["HARD_CASES", "construct_case"]

HARD_CASES = {
    "none": "a random model, x ~ Bernoulli(0.5), eps ~ N(0, I)",
    "log-w-1e4": ("the output layer made confidently wrong: p_x/logits/b += s for every pixel, with "
                  "s = 1e4 / (mean number of zero pixels per image), so log p(x|h1) and log w are near -1e4 "
                  "and exp(log w) underflows to 0 in float64"),
    "extreme-images": "example 0 is the all-zero image, example 1 the all-one image, any others random",
    "degenerate-weights": ("sample 0 of every example has eps = 0 (h at the mean of q), the others are spread "
                           "by raising every q log_sigma bias by c (c = 1, 2, ... until the largest normalized "
                           "weight of every example is above 1 - 1e-8): one sample takes almost all the mass"),
    "softplus-threshold": ("every example's image is made all ones except at its first zero pixel, and every "
                           "p_x/logits/b is shifted so that the smallest logit of each pixel over the samples and "
                           "examples is 20.05: every logit lies between 20 and 40, where softplus(l) = l + log1p(e^-l) "
                           "differs from l by 2e-9 to 4e-18 (a softplus that returns l above a threshold of 20, "
                           "torch.nn.functional.softplus's default, drops that term)"),
}

#: The smallest decoder logit of the softplus-threshold case: just above torch.nn.functional.softplus's threshold 20.
SOFTPLUS_CASE_MIN_LOGIT = 20.05


def decoder_logits(params, x, eps):
    """The logits of p(x | h_1) at the samples given by ``eps``, ``(k, batch, D)``."""
    h1 = log_weight_terms(params, x, eps)["h"][0]
    return dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h1))


def construct_case(case, params, x, eps, dtype):
    """Apply a hard case's construction; returns ``(params, x, eps, details)``."""
    if case == "none":
        return params, x, eps, {}
    if case == "log-w-1e4":
        zeros_per_image = float(np.mean(np.sum(x == 0, axis=1)))
        if zeros_per_image == 0:
            raise ValueError("the log-w-1e4 case needs images with zero pixels")
        s = 1e4 / zeros_per_image
        params["p_x"]["logits"]["b"] = params["p_x"]["logits"]["b"] + np.asarray(s, dtype)
        return params, x, eps, {"logits_bias_shift": s}
    if case == "extreme-images":
        if x.shape[0] < 2:
            raise ValueError("the extreme-images case needs batch >= 2 (an all-zero and an all-one image)")
        x = np.concatenate([np.zeros((1, x.shape[1]), dtype), np.ones((1, x.shape[1]), dtype), x[2:]])
        return params, x, eps, {}
    if case == "degenerate-weights":
        if eps[0].shape[0] < 2:
            raise ValueError("the degenerate-weights case needs k >= 2")
        eps = [np.concatenate([np.zeros_like(e[:1]), e[1:]]) for e in eps]
        for c in range(1, 65):
            shifted = {net: {layer: dict(v) for layer, v in layers.items()} for net, layers in params.items()}
            for net in shifted:
                if net.startswith("q_"):
                    shifted[net]["log_sigma"]["b"] = shifted[net]["log_sigma"]["b"] + np.asarray(c, dtype)
            top = float(np.min(np.max(normalized_weights(log_weight_terms(shifted, x, eps)["log_w"]), axis=0)))
            if top > 1 - 1e-8:  # (compared in float64: 1 - 1e-8 is 1 in float32)
                return shifted, x, eps, {"log_sigma_bias_shift": c, "min_max_normalized_weight": float(top)}
        raise ValueError("could not make the weights degenerate")
    if case == "softplus-threshold":
        # One zero pixel per image: the decoder is confidently right everywhere else, so log w is not dominated
        # by -l of many zero pixels and the dropped log1p(e^-l) terms weigh more against the gradients' scale.
        first_zero = np.argmin(x, axis=1)  # (batch,) the first zero pixel (pixel 0 for an all-one image)
        x = np.ones_like(x)
        x[np.arange(x.shape[0]), first_zero] = 0
        logits = decoder_logits(params, x, eps)  # (k, batch, D)
        low = np.min(logits, axis=(0, 1))  # (D,) the smallest logit of each pixel
        params["p_x"]["logits"]["b"] = params["p_x"]["logits"]["b"] + (SOFTPLUS_CASE_MIN_LOGIT - low).astype(dtype)
        logits = decoder_logits(params, x, eps)
        if not (20 < np.min(logits) and np.max(logits) < 40):
            raise ValueError(f"the softplus-threshold case needs every logit in (20, 40), got "
                             f"[{np.min(logits):.3g}, {np.max(logits):.3g}]")
        return params, x, eps, {"logits_min": float(np.min(logits)), "logits_max": float(np.max(logits))}
    raise ValueError(f"unknown hard case {case!r}; choose one of {sorted(HARD_CASES)}")


