"""Parameter trees: nested dicts of arrays with string keys (a network, a layer, ``"W"`` and ``"b"``).

A tree's *names* are the ``/``-joined key paths of its leaves, in insertion order
(``"q_h1/hidden_0/W"``); they are what checkpoints and oracle fixtures store.
"""
import numpy as np

__all__ = ["tree_map", "tree_leaves", "flatten_tree", "unflatten_tree", "check_same_structure", "tree_dtype"]


def tree_map(fn, tree, *rest):
    """Apply ``fn`` leaf-wise to ``tree`` and trees of the same structure, keeping the keys."""
    if isinstance(tree, dict):
        return {key: tree_map(fn, tree[key], *[r[key] for r in rest]) for key in tree}
    return fn(tree, *rest)


def flatten_tree(tree, prefix=""):
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``, leaves in insertion order."""
    flat = {}
    for key, value in tree.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"tree key {key!r} must be a string without '/'")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_tree(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten_tree(flat):
    """Inverse of :func:`flatten_tree`: ``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    tree = {}
    for name, value in flat.items():
        node = tree
        *path, leaf = name.split("/")
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def tree_leaves(tree):
    """The leaves of ``tree`` in the order of its names."""
    return list(flatten_tree(tree).values())


def check_same_structure(tree, other, what="tree", other_what="parameters"):
    """Raise ``ValueError`` naming the first difference in keys or leaf shapes."""
    a, b = flatten_tree(tree), flatten_tree(other)
    if list(a) != list(b):
        missing = [n for n in b if n not in a]
        extra = [n for n in a if n not in b]
        raise ValueError(
            f"{what} does not match the structure of the {other_what}: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
            + ("" if missing or extra else " (same names in a different order)"))
    for name in a:
        if np.shape(a[name]) != np.shape(b[name]):
            raise ValueError(f"{what} entry {name!r} has shape {np.shape(a[name])}, "
                             f"the {other_what} have {np.shape(b[name])}")


def tree_dtype(tree):
    """The one floating dtype shared by every leaf (of a tree, or a list of arrays); ``ValueError`` if they differ."""
    leaves = tree_leaves(tree) if isinstance(tree, dict) else list(tree)
    dtypes = {np.result_type(leaf) for leaf in leaves}
    if len(dtypes) != 1:
        raise ValueError(f"parameter arrays have mixed dtypes {sorted(map(str, dtypes))}")
    (dtype,) = dtypes
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"parameters must be float32 or float64, got {dtype}")
    return np.dtype(dtype)
