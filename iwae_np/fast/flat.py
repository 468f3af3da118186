"""One flat buffer behind a parameter tree: named views (what users see) over one contiguous array.

The optimizer and the gradient work on the buffer (a few vectorized passes instead of one small pass
per leaf); users and checkpoints see the named arrays of :mod:`iwae_np.tree`. Speed only: the
definition never uses this.
"""
import weakref

import numpy as np

from ..tree import flatten_tree, tree_leaves
from .buffers import new_buffer

__all__ = ["FlatLayout", "flat_layout", "flat_buffer", "pack_tree", "all_finite"]

# ---------------------------------------------------------------------------------------------
# one flat buffer behind a tree: named views (what users see) over one contiguous array (what the
# optimizer and the gradient work on, a few vectorized passes instead of one small pass per leaf)


class FlatLayout:
    """Where each leaf of a tree lives in one flat buffer: names in order, shapes, offsets, one dtype.

    ``views(flat)`` gives the tree back as named views into ``flat`` (no copy); ``flatten(tree)``
    copies a tree into a fresh buffer. ``units`` groups the leaves into the sub-trees the
    differentiable views hand out, one autograd node each (:func:`iwae_np.fast.primitives.subtree_view`):
    the networks (``("q_h1",)`` -> ``hidden_0/W``, ``hidden_0/b``, ...) of a model's tree, the innermost
    dicts of other trees; None when a dict holds both arrays and dicts.
    Layouts are made once per structure (:func:`flat_layout`) and shared.
    """

    def __init__(self, names, shapes, dtype):
        self.names, self.shapes, self.dtype = tuple(names), tuple(shapes), np.dtype(dtype)
        self.sizes = tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)
        self.offsets = tuple(int(o) for o in np.cumsum((0,) + self.sizes[:-1]))
        self.size = int(sum(self.sizes))
        self._paths = tuple(tuple(name.split("/")) for name in self.names)
        depths = {len(path) for path in self._paths}
        # the units one view node hands out: whole networks ({layer: {W, b}}) when every array sits
        # three or more levels deep, else the innermost dicts (layers)
        cut = (depths.pop() - 2) if len(depths) == 1 and min(len(p) for p in self._paths) >= 3 else None
        groups = {}
        for path, offset, size, shape in zip(self._paths, self.offsets, self.sizes, self.shapes):
            at = cut if cut is not None else len(path) - 1
            groups.setdefault(path[:at], []).append((path[at:], offset, size, shape))
        roots = set(groups)
        mixed = any(root[:i] in roots for root in roots for i in range(len(root)))
        self.units = None if mixed else tuple((root, tuple(spec)) for root, spec in groups.items())

    def views(self, flat):
        """The tree of named views into the 1-D array ``flat`` (recorded, so :func:`flat_buffer` finds ``flat`` again)."""
        leaves = [flat[o:o + n].reshape(s) for o, n, s in zip(self.offsets, self.sizes, self.shapes)]
        _remember(flat, self, leaves)
        tree = {}
        for (*path, key), leaf in zip(self._paths, leaves):
            node = tree
            for part in path:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                node = child
            node[key] = leaf
        return tree

    def flatten(self, tree):
        """A fresh flat buffer holding the leaves of ``tree`` (same names and shapes) in order, in this layout's dtype."""
        flat = new_buffer(self.size, self.dtype)
        for leaf, o, n in zip(tree_leaves(tree), self.offsets, self.sizes):
            flat[o:o + n] = np.ravel(leaf)
        return flat


_LAYOUTS = {}  # (names, shapes, dtype) -> FlatLayout, one per structure
_PACKED = {}  # id(flat) -> (weakref to flat, layout, weakrefs to the views handed out): a cache, never a source of values


def _remember(flat, layout, leaves):
    key = id(flat)
    _PACKED[key] = (weakref.ref(flat, lambda _, key=key: _PACKED.pop(key, None)), layout,
                    tuple(weakref.ref(leaf) for leaf in leaves))


def _named_leaves(tree, prefix="", out=None):
    """``[(name, leaf)]`` in order (no checks of the keys: :func:`flatten_tree` does those)."""
    out = [] if out is None else out
    for key, value in tree.items():
        if isinstance(value, dict):
            _named_leaves(value, f"{prefix}{key}/", out)
        else:
            out.append((f"{prefix}{key}", value))
    return out


def flat_layout(tree):
    """The :class:`FlatLayout` of a tree whose leaves are arrays of one dtype, or None (mixed or non-float dtypes)."""
    named = _named_leaves(tree)
    names = tuple(n for n, _ in named)
    shapes = tuple(np.shape(v) for _, v in named)
    dtypes = {np.result_type(v) for _, v in named}
    if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
        return None
    key = (names, shapes, dtypes.pop())
    if key not in _LAYOUTS:
        flatten_tree(tree)  # checks the keys
        _LAYOUTS[key] = FlatLayout(*key)
    return _LAYOUTS[key]


def flat_buffer(tree):
    """``(flat, layout)`` when ``tree`` is exactly the views :meth:`FlatLayout.views` made of ``flat``; else None.

    Checks every leaf by identity, so a tree whose views were replaced, reordered or renamed is not taken for packed.
    """
    named = _named_leaves(tree)
    if not named:
        return None
    flat = getattr(named[0][1], "base", None)
    entry = _PACKED.get(id(flat)) if flat is not None else None
    if entry is None or entry[0]() is not flat:
        return None
    layout, refs = entry[1], entry[2]
    if len(refs) != len(named) or any(ref() is not leaf for ref, (_, leaf) in zip(refs, named)):
        return None
    if tuple(n for n, _ in named) != layout.names:
        return None
    return flat, layout


def pack_tree(tree):
    """``(flat, layout, packed)``: the tree's one flat buffer, its layout, and the tree as views into it.

    No copy when ``tree`` is already packed. ``None`` when the leaves do not share one floating dtype.
    """
    found = flat_buffer(tree)
    if found is not None:
        return found[0], found[1], tree
    layout = flat_layout(tree)
    if layout is None:
        return None
    flat = layout.flatten(tree)
    return flat, layout, layout.views(flat)


def _finite(a):
    return bool(np.isfinite(a).all())


def all_finite(arrays):
    """Whether every entry of every array of the list is finite; one pass over the flat buffer when they are its views."""
    arrays = [np.asarray(a) for a in arrays]
    base = arrays[0].base if arrays else None
    if (base is not None and base.ndim == 1 and all(a.base is base for a in arrays)
            and base.size == sum(a.size for a in arrays)):
        return _finite(base)  # the arrays are views into base and cover all of it
    return all(_finite(a) for a in arrays)
