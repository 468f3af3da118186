r"""How two arrays are compared everywhere in the package: the infinity-norm relative error.

.. math::
    e_{abs} = \max_j |a_j - r_j|, \qquad e_{rel} = e_{abs} / \max_j |r_j|

computed in float64, ``r`` the reference. Non-finite entries agree only where both arrays hold the
same value (a NaN never agrees); otherwise the error is infinite. ``e_rel`` is 0 when both are 0 and
infinite when only ``max|r|`` is 0.
"""
import math
from typing import NamedTuple

import numpy as np

__all__ = ["ArrayError", "array_error"]


class ArrayError(NamedTuple):
    max_abs_error: float
    max_abs_reference: float
    max_rel_error: float


def array_error(test, reference):
    """The :class:`ArrayError` of ``test`` against ``reference`` (same shape)."""
    a = np.asarray(test, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    finite = np.isfinite(r)
    same_nonfinite = bool(np.all(a[~finite] == r[~finite])) and bool(np.all(np.isfinite(a[finite])))
    if not same_nonfinite:
        abs_err = math.inf
    else:
        abs_err = float(np.max(np.abs(a[finite] - r[finite]))) if np.any(finite) else 0.0
    scale = float(np.max(np.abs(r[finite]))) if np.any(finite) else 0.0
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else math.inf)
    return ArrayError(abs_err, scale, rel_err)
