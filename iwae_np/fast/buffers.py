r"""Work arrays reused from one training step to the next, instead of fresh ones that page-fault.

Every numpy operation returns a new array. glibc serves large ones with fresh pages from the kernel
and hands them back when they are freed, so each new array of several MiB costs a page fault per
4 KiB page on first touch: measured at k = 50 (one-layer model, one thread), a fifth of the
training step's CPU time went to faults on the logits, their gradient, the hidden activations,
the flat parameter, moment and gradient buffers. (Setting glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment has the same effect for the whole process.)

:func:`empty` and :func:`new_buffer` hand out arrays from a cache of those they made before, once
nothing refers to them any more: no array, view, tree or autograd node holds them (CPython's
reference count says so), so reusing one cannot be observed by any caller. Arrays smaller than
:data:`MIN_BYTES` are not cached (they do not fault much); the cache keeps at most
:data:`CACHE_BYTES` (idle arrays are dropped, least recently made first, to make room). A forked
child starts with an empty cache. :func:`clear` drops every idle array.
"""
import math
import os
import sys
import threading

import numpy as np

__all__ = ["empty", "new_buffer", "clear", "cached_bytes", "CACHE_BYTES", "MIN_BYTES"]

#: Most bytes the cache holds (arrays in use and idle ones together).
CACHE_BYTES = 256 << 20
#: Arrays below this size come straight from numpy.
MIN_BYTES = 1 << 18


class _Cache:
    def __init__(self):
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.arrays = {}  # (size, dtype) -> [1-D arrays], oldest first
        self.nbytes = 0


_cache = _Cache()


def _current():
    global _cache
    if _cache.pid != os.getpid():  # a forked child: the parent's lock may be held by a thread that does not exist here
        _cache = _Cache()
    return _cache


def _idle(arrays):
    """The first of ``arrays`` that nothing refers to but the list itself, or None."""
    for buf in arrays:
        if sys.getrefcount(buf) == _IDLE_REFCOUNT:
            return buf
    return None


def _idle_refcount():
    # the reference count _idle sees for an array held by its list alone, measured the same way
    # (loop variable, call argument), so that it holds whatever the interpreter counts on its stack
    arrays = [np.empty(0)]
    for buf in arrays:
        return sys.getrefcount(buf)


_IDLE_REFCOUNT = _idle_refcount()
# reuse needs exact reference counts: CPython, with the GIL
_ENABLED = sys.implementation.name == "cpython" and getattr(sys, "_is_gil_enabled", lambda: True)()


def _evict(cache, nbytes):
    # drop idle arrays, oldest first, until nbytes more fit
    for arrays in list(cache.arrays.values()):
        while cache.nbytes + nbytes > CACHE_BYTES:
            buf = _idle(arrays)
            if buf is None:
                break
            del arrays[next(i for i, a in enumerate(arrays) if a is buf)]
            cache.nbytes -= buf.nbytes
        if cache.nbytes + nbytes <= CACHE_BYTES:
            return


def new_buffer(size, dtype, zero=False):
    """A 1-D array of ``size`` elements of ``dtype``, uninitialized (or zeros with ``zero``), reused when idle."""
    dtype = np.dtype(dtype)
    size = int(size)
    nbytes = size * dtype.itemsize
    if not _ENABLED or nbytes < MIN_BYTES:
        return np.zeros(size, dtype) if zero else np.empty(size, dtype)
    cache = _current()
    with cache.lock:
        arrays = cache.arrays.setdefault((size, dtype), [])
        buf = _idle(arrays)
        if buf is None:
            if cache.nbytes + nbytes > CACHE_BYTES:
                _evict(cache, nbytes)
            buf = np.empty(size, dtype)
            if cache.nbytes + nbytes <= CACHE_BYTES:
                arrays.append(buf)
                cache.nbytes += nbytes
    if zero:
        buf.fill(0)
    return buf


def empty(shape, dtype):
    """``np.empty(shape, dtype)``, from the cache when it is large: a C-contiguous view of a cached buffer."""
    size = math.prod(shape)
    if size * np.dtype(dtype).itemsize < MIN_BYTES:
        return np.empty(shape, dtype)
    return new_buffer(size, dtype).reshape(shape)


def clear():
    """Drop every idle array from the cache (arrays in use stay theirs' holders')."""
    cache = _current()
    with cache.lock:
        _evict_all(cache)


def _evict_all(cache):
    for arrays in cache.arrays.values():
        buf = _idle(arrays)
        while buf is not None:
            del arrays[next(i for i, a in enumerate(arrays) if a is buf)]
            cache.nbytes -= buf.nbytes
            buf = _idle(arrays)


def cached_bytes():
    """Bytes of the arrays the cache holds (in use or idle)."""
    return _current().nbytes
