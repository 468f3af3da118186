"""Parameter trees and the one flat buffer behind them (iwae_np.tree).

Catches: views that are copies (an update of the buffer not seen through the names), a layout in
another order than the names (checkpoints and fixtures would mix arrays up), a tree taken for
packed because its leaves merely share a buffer (swapped, replaced or renamed views would make
Adam update the wrong arrays), a finiteness check that misses a NaN.
"""
import numpy as np
import pytest

from iwae_np.fast.flat import all_finite, flat_buffer, flat_layout, pack_tree
from iwae_np.tree import flatten_tree, unflatten_tree


def a_tree(rng, dtype=np.float64):
    return {"q": {"h0": {"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)},
                  "mu": {"W": rng.normal(size=(2, 1)).astype(dtype), "b": rng.normal(size=1).astype(dtype)}},
            "p": {"out": {"W": rng.normal(size=(1, 3)).astype(dtype), "b": np.zeros(3, dtype)}}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_tree_keeps_names_order_shapes_values_and_dtype(rng, dtype):
    tree = a_tree(rng, dtype)
    flat, layout, packed = pack_tree(tree)
    assert list(flatten_tree(packed)) == list(flatten_tree(tree)) == list(layout.names)
    assert flat.dtype == dtype and flat.shape == (sum(v.size for v in flatten_tree(tree).values()),)
    for name, value in flatten_tree(tree).items():
        view = flatten_tree(packed)[name]
        assert view.shape == value.shape and view.dtype == dtype and np.array_equal(view, value)
        assert view.base is flat  # a view, not a copy
    # the buffer holds the leaves in the names' order: what Adam's passes and the gradient rely on
    np.testing.assert_array_equal(flat, np.concatenate([np.ravel(v) for v in flatten_tree(tree).values()]))
    flat[layout.offsets[1]] = 42.0  # writing the buffer is seen through the name
    assert packed["q"]["h0"]["b"][0] == 42.0 and tree["q"]["h0"]["b"][0] != 42.0  # the input was copied


def test_a_packed_tree_is_found_again_without_copy_and_a_doctored_one_is_not(rng):
    flat, layout, packed = pack_tree(a_tree(rng))
    again = pack_tree(packed)
    assert again[0] is flat and again[2] is packed  # no copy
    assert flat_buffer(packed) == (flat, layout)
    swapped = unflatten_tree(flatten_tree(packed))  # same views, a new dict: still the buffer's own leaves
    assert flat_buffer(swapped)[0] is flat
    # views of the same buffer, but not where the layout says: must not count as packed
    swapped["q"]["h0"]["b"], swapped["p"]["out"]["b"] = packed["p"]["out"]["b"][:2], packed["q"]["h0"]["b"]
    assert flat_buffer(swapped) is None
    replaced = unflatten_tree(flatten_tree(packed))
    replaced["q"]["mu"]["b"] = packed["q"]["mu"]["b"].copy()
    assert flat_buffer(replaced) is None
    renamed = {"q": packed["q"], "r": packed["p"]}
    assert flat_buffer(renamed) is None
    assert flat_buffer({"a": np.zeros(3)}) is None


def test_layouts_are_shared_per_structure_and_mixed_dtypes_have_none(rng):
    assert flat_layout(a_tree(rng)) is flat_layout(a_tree(rng))
    assert flat_layout(a_tree(rng)) is not flat_layout(a_tree(rng, np.float32))
    mixed = a_tree(rng)
    mixed["p"]["out"]["b"] = mixed["p"]["out"]["b"].astype(np.float32)
    assert flat_layout(mixed) is None and pack_tree(mixed) is None
    # a model's tree ({network: {layer: {W, b}}}) is viewed network by network, other trees dict by dict
    units = dict(flat_layout(a_tree(rng)).units)
    assert set(units) == {("q",), ("p",)}
    assert [path for path, *_ in units[("q",)]] == [("h0", "W"), ("h0", "b"), ("mu", "W"), ("mu", "b")]
    layers = dict(flat_layout({"l0": {"W": np.zeros(2), "b": np.zeros(1)}, "l1": {"W": np.zeros(3)}}).units)
    assert [path for path, *_ in layers[("l0",)]] == [("W",), ("b",)] and set(layers) == {("l0",), ("l1",)}
    assert flat_layout({"a": {"W": np.zeros(2)}, "b": np.zeros(1)}).units is None  # arrays beside dicts


def test_all_finite_finds_one_nan_in_a_buffer_or_in_separate_arrays(rng):
    flat, layout, packed = pack_tree(a_tree(rng))
    leaves = list(flatten_tree(packed).values())
    assert all_finite(leaves)
    leaves[-1][1] = np.nan
    assert not all_finite(leaves)
    assert not all_finite([np.ones(2), np.array([1.0, np.inf])]) and all_finite([np.ones(2), np.zeros(3)])
    big = np.full(4, np.finfo(np.float32).max, np.float32)  # finite, though their sum overflows
    assert all_finite([big]) and all_finite(list(flatten_tree(pack_tree({"a": {"W": big}})[2]).values()))
