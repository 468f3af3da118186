"""Checking results against fixtures: per array, per fixture, per suite."""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..verify.compare import array_error
from .format import Fixture, OracleInputError, check_real_arrays, load_fixture, load_results, read_suite_index
from .keys import quantity_group

__all__ = ["ComparisonRow", "check_tolerance", "compare_arrays", "check_results", "suite_fixtures", "check_suite", "worst_errors"]


@dataclass
class ComparisonRow:
    key: str
    shape: tuple
    max_abs_reference: float
    max_abs_error: float
    max_rel_error: float
    rtol: float
    atol: float

    @property
    def passed(self):
        # (an infinite error, a NaN or a non-finite value where the reference has another, never agrees, even
        # at an infinite tolerance)
        return bool(math.isfinite(self.max_abs_error)
                    and self.max_abs_error <= self.rtol * self.max_abs_reference + self.atol)


def check_tolerance(rtol, atol):
    """``(rtol, atol)`` if each is None or a number >= 0 (infinity allowed); otherwise a one-line error."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
            raise OracleInputError(f"{name} must be a number >= 0, got {value!r}")
    return rtol, atol


def compare_arrays(test, reference, rtol, atol, key=""):
    r"""One row of the comparison of ``test`` against the fixture's ``reference``.

    .. math::
        e_{abs} = \max_j |a_j - r_j|, \qquad e_{rel} = e_{abs} / \max_j |r_j|, \qquad
        \text{agree} \iff e_{abs} \le rtol \cdot \max_j |r_j| + atol

    by :func:`iwae_np.verify.compare.array_error` (float64; ``e_rel`` is 0 when both are 0 and inf when
    only ``max|r|`` is; non-finite entries agree only where both arrays hold the same value).
    """
    err = array_error(test, reference)  # the package's one comparison of arrays
    return ComparisonRow(key, tuple(np.shape(reference)), err.max_abs_reference, err.max_abs_error,
                         err.max_rel_error, rtol, atol)


def check_results(fixture, results, rtol=None, atol=None):
    """Compare every output of ``fixture`` with ``results`` (a dict of arrays); a list of rows.

    Tolerances default to those of the fixture's arrays' dtype (:attr:`Fixture.tolerance`). A missing key,
    a shape that differs, or a fixture without outputs is an :class:`OracleInputError`; keys of ``results``
    the fixture does not have are ignored.
    """
    if not isinstance(fixture, Fixture):
        fixture = load_fixture(fixture)
    if not isinstance(results, dict):
        results = load_results(results)
    check_tolerance(rtol, atol)
    tol = fixture.tolerance
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    outputs = fixture.outputs
    if not outputs:
        raise OracleInputError(f"fixture {fixture.manifest.get('name')!r} has no output arrays: nothing to compare")
    missing = [key for key in outputs if key not in results]
    if missing:
        raise OracleInputError(f"results lack {len(missing)} of the fixture's {len(outputs)} quantities, "
                               f"e.g. missing key {missing[0]!r}" + (f" (and {missing[1:4]})" if len(missing) > 1 else ""))
    rows = []
    for key in outputs:
        ref, got = fixture.arrays[key], np.asarray(results[key])
        if got.shape != ref.shape:
            raise OracleInputError(f"shape mismatch for {key!r}: results have {list(got.shape)}, "
                                   f"the fixture has {list(ref.shape)}")
        check_real_arrays(results, "results", [key])
        rows.append(compare_arrays(got, ref, rtol, atol, key))
    return rows


def suite_fixtures(directory):
    """The fixture names a suite directory's ``suite.json`` lists, in order."""
    return read_suite_index(directory)


def check_suite(directory, results_directory, rtol=None, atol=None):
    """:func:`check_results` for every fixture of a suite against ``<results_directory>/<name>.npz``;
    ``{name: rows}``."""
    directory, results_directory = Path(directory), Path(results_directory)
    return {name: check_results(load_fixture(directory / name), load_results(results_directory / f"{name}.npz"),
                                rtol, atol)
            for name in suite_fixtures(directory)}


def worst_errors(rows):
    """``{quantity group: largest relative error}`` over comparison rows (see :func:`quantity_group`)."""
    worst = {}
    for r in rows:
        group = quantity_group(r.key)
        worst[group] = max(worst.get(group, 0.0), r.max_rel_error)
    return worst
