"""Reused work arrays (iwae_np.fast.buffers): an array is handed out again only when nothing refers to it.

Catches: a reference count taken at the wrong depth (an array still held by a view, a tree or an
autograd node handed out twice: two results sharing memory), no reuse at all (the page faults come
back), a cache that grows without bound.
"""
import numpy as np

from iwae_np.fast import buffers


def test_an_array_is_reused_only_when_nothing_holds_it(monkeypatch):
    monkeypatch.setattr(buffers, "_cache", buffers._Cache())
    n = buffers.MIN_BYTES // 8 + 10
    a = buffers.new_buffer(n, np.float64)
    assert buffers.new_buffer(n, np.float64) is not a  # a is held here
    view = a[3:7].reshape(2, 2)
    del a
    b = buffers.new_buffer(n, np.float64)
    assert b.base is None and view.base is not b  # held through a view: not handed out
    del view, b
    c = buffers.new_buffer(n, np.float64, zero=True)
    assert np.all(c == 0)
    ids = {id(x) for x in buffers._current().arrays[(n, np.dtype(np.float64))]}
    assert id(c) in ids  # reused, not made afresh
    tree = {"layer": {"W": c[:4]}}  # a parameter tree holding a view of c, as Adam's results do
    del c
    assert buffers.new_buffer(n, np.float64) is not tree["layer"]["W"].base


def test_small_arrays_are_not_cached_and_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(buffers, "_cache", buffers._Cache())
    small = buffers.empty((4, 4), np.float32)
    assert small.shape == (4, 4) and buffers.cached_bytes() == 0
    monkeypatch.setattr(buffers, "CACHE_BYTES", 3 * buffers.MIN_BYTES)
    held = [buffers.new_buffer(buffers.MIN_BYTES, np.uint8) for _ in range(5)]  # 5 in use, room for 3
    assert buffers.cached_bytes() == 3 * buffers.MIN_BYTES and len({id(h) for h in held}) == 5
    del held
    other = buffers.new_buffer(2 * buffers.MIN_BYTES, np.uint8)  # evicts idle ones to make room
    assert buffers.cached_bytes() <= buffers.CACHE_BYTES and other.nbytes == 2 * buffers.MIN_BYTES
    buffers.clear()
    assert buffers.cached_bytes() == other.nbytes  # the one in use stays
    view = buffers.empty((3, buffers.MIN_BYTES // 4), np.float32)
    assert view.shape == (3, buffers.MIN_BYTES // 4) and view.flags.c_contiguous
