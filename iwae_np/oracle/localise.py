"""Where a disagreement is: which network (recognition phi, generative theta), which layer and which term of
``log w`` (``log p(x|h)``, ``log p(h)``, ``log q(h|x)``) differ, from the comparison rows of a check or a replay.

A failed check leads with this (issue 19): "grad.iwae differs" says that something is wrong, "the generative
network's p_x/logits layer, while log p(x|h1) agrees" says where to look. The terms are the candidate's
``term.*`` outputs: a candidate that gives them is localised down to the density; one that gives only ``log_w``
is told that log w differs and to give them.
"""
from dataclasses import dataclass, field

from .keys import role_of

__all__ = ["Where", "localise", "format_where", "TERM_NAMES"]

#: Readable names of the terms, as the paper writes them.
TERM_NAMES = {"log_p_x_given_h1": "log p(x|h1)", "log_q_h1_given_x": "log q(h1|x)"}

ROLE_NAMES = {"phi": "the recognition network (phi)", "theta": "the generative network (theta)"}


def _term_name(key):
    name = key.split(".", 1)[1]
    if name in TERM_NAMES:
        return TERM_NAMES[name]
    # log_p_h1_given_h2 -> log p(h1|h2); log_p_h2 -> log p(h2); log_q_h2_given_h1 -> log q(h2|h1)
    parts = name.split("_")
    dist, var = parts[1], parts[2]
    return f"log {dist}({var}|{parts[4]})" if len(parts) > 3 else f"log {dist}({var})"


@dataclass
class Where:
    """The keys that disagree, grouped: ``terms`` (readable names), ``terms_agreeing``, ``log_w`` (True: differs,
    False: agrees, None: not given), ``latents`` and ``bounds`` (keys), and ``gradients``:
    ``{objective: {"phi": [layers], "theta": [layers]}}`` of the parameter arrays that differ."""
    terms: list = field(default_factory=list)
    terms_agreeing: list = field(default_factory=list)
    log_w: object = None
    latents: list = field(default_factory=list)
    bounds: list = field(default_factory=list)
    gradients: dict = field(default_factory=dict)
    gradients_given: list = field(default_factory=list)


def localise(rows):
    """:class:`Where` of the comparison rows (:class:`~iwae_np.oracle.compare.ComparisonRow`) that disagree."""
    where = Where()
    for r in rows:
        key, bad = r.key, not r.passed
        if key.startswith("term."):
            (where.terms if bad else where.terms_agreeing).append(_term_name(key))
        elif key == "log_w":
            where.log_w = bad
        elif key.startswith("h."):
            if bad:
                where.latents.append(key)
        elif key.startswith("bound") or key == "normalized_weights":
            if bad:
                where.bounds.append(key)
        elif key.startswith("grad."):
            _, objective, net, layer, _ = key.split(".")
            if objective not in where.gradients_given:
                where.gradients_given.append(objective)
            if bad:
                layers = where.gradients.setdefault(objective, {}).setdefault(role_of(net), [])
                if f"{net}/{layer}" not in layers:
                    layers.append(f"{net}/{layer}")
    return where


def format_where(where):
    """The lines that lead the report of a disagreement, most specific first; [] when nothing disagrees."""
    lines = []
    if where.latents:
        lines.append(f"where: the latents {', '.join(where.latents)} differ (the sampling, h = mu + sigma * eps, of "
                     "the recognition network (phi))")
    if where.terms:
        agree = f"; {', '.join(where.terms_agreeing)} agree" if where.terms_agreeing else ""
        lines.append(f"where: the term{'s' if len(where.terms) > 1 else ''} {', '.join(where.terms)} of log w "
                     f"differ{'' if len(where.terms) > 1 else 's'}{agree}")
    elif where.log_w:
        lines.append("where: log w differs (give the term.* outputs to see which of log p(x|h), log p(h) and "
                     "log q(h|x))" if not where.terms_agreeing else
                     f"where: log w differs while every term given agrees ({', '.join(where.terms_agreeing)}): "
                     "log w is not their difference")
    if where.bounds:
        value = "log w agrees, so the bound's formula" if where.log_w is False else "the values"
        lines.append(f"where: {', '.join(where.bounds)} differ{'s' if len(where.bounds) == 1 else ''} ({value})")
    for objective, roles in where.gradients.items():
        parts = [f"{ROLE_NAMES[role]}: {', '.join(layers)}" for role, layers in sorted(roles.items())]
        agreeing = [ROLE_NAMES[role] for role in ("phi", "theta") if role not in roles]
        values = " while log w and the bounds agree" if where.log_w is False and not where.bounds else ""
        lines.append(f"where: grad.{objective} differs in " + "; ".join(parts)
                     + (f" ({agreeing[0]} agrees)" if agreeing else "") + values)
    return lines
