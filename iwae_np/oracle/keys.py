"""The oracle's names: every key of a fixture, a replay file and a statistical file, defined once (docs/oracle.md
sections 3, 12 and 13).

What a fixture stores (:func:`output_shapes`), what a replay file may hold (the same keys at the candidate's
own k) and what a statistical file may hold (:func:`draw_shapes`) are all read from here, so that the writer
(:func:`iwae_np.oracle.quantities.compute_outputs`), the fixture reader and the two modes cannot drift apart.
The names of the bounds and gradients are :data:`BOUND_NAMES` and :data:`GRADIENT_NAMES`; what each computes
is :mod:`iwae_np.oracle.quantities`.
"""

__all__ = ["BOUND_NAMES", "GRADIENT_NAMES", "param_key", "grad_key", "latent_key", "term_key", "bound_key",
           "bound_mean_key", "term_names", "quantity_group", "network_of", "role_of", "output_shapes",
           "manifest_output_shapes", "draw_shapes", "manifest_draw_shapes"]

#: Per-example bounds a fixture stores, in order (section 5): objectives of :data:`iwae_np.estimators.OBJECTIVES`
#: (PIWAE reports IWAE's bound). Listed here, not read from the registry, because they are part of the fixture
#: format: a new objective changes the suite only with a new suite version (tests check the names against it).
BOUND_NAMES = ("vae", "iwae", "miwae", "ciwae", "renyi")
#: Gradients a fixture stores, in order (section 6): each objective's own, and IWAE's by each other estimator.
GRADIENT_NAMES = ("vae", "iwae", "miwae", "ciwae", "renyi", "stl", "dreg", "rws", "piwae")


def param_key(name):
    """npz key of a parameter: ``"q_h1/hidden_0/W"`` -> ``"param.q_h1.hidden_0.W"`` ('/' becomes '.')."""
    return "param." + name.replace("/", ".")


def grad_key(objective, name):
    """``grad.<objective>.<network>.<layer>.<W or b>`` of the parameter ``name`` (``network/layer/array``)."""
    return f"grad.{objective}." + name.replace("/", ".")


def latent_key(l):
    """The latents of stochastic layer ``l`` (1-based): ``h.h<l>``."""
    return f"h.h{l}"


def term_key(name):
    return f"term.{name}"


def bound_key(name):
    return f"bound.{name}"


def bound_mean_key(name):
    return f"bound_mean.{name}"


def term_names(n_stochastic):
    """The log-density terms of ``log w`` for ``L`` stochastic layers (section 3): the generative ones top-down
    from ``log p(x|h1)``, then the recognition ones bottom-up."""
    L = n_stochastic
    return (["log_p_x_given_h1"] + [f"log_p_h{l}_given_h{l + 1}" for l in range(1, L)] + [f"log_p_h{L}"]
            + ["log_q_h1_given_x"] + [f"log_q_h{l + 1}_given_h{l}" for l in range(1, L)])


def quantity_group(key):
    """The quantity an array belongs to: ``grad.<objective>`` for gradients, the key itself otherwise."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "grad" else key


def network_of(name):
    """The network of a parameter name ``network/layer/array`` (or of a ``grad.*`` key)."""
    if name.startswith("grad."):
        return name.split(".")[2]
    return name.split("/")[0]


def role_of(network):
    """``"phi"`` for a recognition network (``q_*``), ``"theta"`` for a generative one (``p_*``)."""
    return "phi" if network.startswith("q_") else "theta"


def output_shapes(latent_dims, param_shapes, k, batch):
    """``{key: shape}`` of every output a fixture of these sizes stores (section 3), in the fixture's order.

    ``latent_dims``: ``[d_1, ..., d_L]``; ``param_shapes``: ``{name: shape}`` in parameter order."""
    L = len(latent_dims)
    shapes = {latent_key(l): (k, batch, d) for l, d in enumerate(latent_dims, start=1)}
    shapes.update({term_key(t): (k, batch) for t in term_names(L)})
    shapes.update({"log_w": (k, batch), "normalized_weights": (k, batch)})
    for b in BOUND_NAMES:
        shapes[bound_key(b)] = (batch,)
        shapes[bound_mean_key(b)] = ()
    shapes.update({grad_key(g, p): tuple(s) for g in GRADIENT_NAMES for p, s in param_shapes.items()})
    return shapes


def _manifest_sizes(manifest):
    latent_dims = [e["shape"][-1] for e in manifest["eps"]]
    param_shapes = {p["name"]: tuple(p["shape"]) for p in manifest["parameters"]}
    return latent_dims, param_shapes


def manifest_output_shapes(manifest, k=None):
    """:func:`output_shapes` of a manifest (its noise layout and parameter list), at ``k`` samples (default the
    fixture's own; replay uses the candidate's)."""
    latent_dims, param_shapes = _manifest_sizes(manifest)
    return output_shapes(latent_dims, param_shapes, manifest["k"] if k is None else k, manifest["batch"])


def draw_shapes(param_shapes, batch):
    """``{key: shape of one draw}`` a statistical results file may hold (section 13): each bound per example and
    its batch mean, each gradient; the file holds ``(N, *shape)``."""
    shapes = {}
    for b in BOUND_NAMES:
        shapes[bound_key(b)] = (batch,)
        shapes[bound_mean_key(b)] = ()
    shapes.update({grad_key(g, p): tuple(s) for g in GRADIENT_NAMES for p, s in param_shapes.items()})
    return shapes


def manifest_draw_shapes(manifest):
    """:func:`draw_shapes` of a manifest."""
    return draw_shapes(_manifest_sizes(manifest)[1], manifest["batch"])
