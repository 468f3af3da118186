r"""The test oracle: versioned golden fixtures for IWAE implementations in other frameworks.

The inputs of a fixture are ``x``, the noise ``eps`` of each stochastic layer and every parameter;
the outputs are everything iwae_np computes from them. Another implementation reads the inputs,
computes the outputs, writes them to a results ``.npz`` under the same keys, and
:func:`check_results` compares them (``iwae-np oracle check``). Format: ``docs/oracle.md``.

- :mod:`~iwae_np.oracle.keys`: every key name of a fixture, a replay file and a statistical file;
- :mod:`~iwae_np.oracle.format`: the format, checksums, reading and writing;
- :mod:`~iwae_np.oracle.quantities`: what is computed (:func:`compute_outputs`);
- :mod:`~iwae_np.oracle.hard_cases`: constructions that break naive implementations;
- :mod:`~iwae_np.oracle.fixtures`: :func:`make_fixture`, :func:`export_fixture`, the standard :data:`SUITE`;
- :mod:`~iwae_np.oracle.compare`: :func:`check_results`, :func:`check_suite`;
- :mod:`~iwae_np.oracle.replay`: :func:`replay_check`, for implementations that draw their own noise and
  write their latents (the noise is recovered from them);
- :mod:`~iwae_np.oracle.statistical`: :func:`statistical_check`, for black boxes: N draws of their bound
  and gradient against iwae_np's own, two-sample tests, power;
- :mod:`~iwae_np.oracle.variants` and :mod:`~iwae_np.oracle.diagnosis`: known mistaken implementations
  (:data:`VARIANTS`) and which one a failing candidate matches.
- :mod:`~iwae_np.oracle.surrogates`: the values of common surrogate losses (:data:`SURROGATES`), which
  replay and statistical mode recognise as a convention when a candidate reports one for a bound.
"""
from .compare import ComparisonRow, check_results, check_suite, compare_arrays, suite_fixtures, worst_errors
from .fixtures import ORACLE_ARCHITECTURES, SUITE, export_fixture, export_suite, make_fixture
from .format import (FORMAT_NAME, FORMAT_VERSION, SUITE_VERSION, TOLERANCES, Fixture, OracleInputError, array_checksum,
                     load_fixture, load_results, write_fixture)
from .keys import param_key, quantity_group
from .diagnosis import VariantMatch, diagnose_exact
from .hard_cases import HARD_CASES
from .quantities import BOUNDS, GRADIENTS, compute_outputs, default_settings
from .replay import ReplayReport, replay_check
from .statistical import StatisticalReport, statistical_check
from .surrogates import SURROGATES
from .variants import VARIANTS, Variant

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "TOLERANCES", "ORACLE_ARCHITECTURES", "HARD_CASES", "SUITE",
           "OracleInputError", "Fixture", "compute_outputs", "make_fixture", "write_fixture", "export_fixture",
           "export_suite", "load_fixture", "load_results", "compare_arrays", "ComparisonRow", "check_results",
           "check_suite", "suite_fixtures", "worst_errors", "param_key", "default_settings", "array_checksum",
           "quantity_group", "BOUNDS", "GRADIENTS", "SUITE_VERSION", "replay_check", "ReplayReport",
           "statistical_check", "StatisticalReport", "VARIANTS", "Variant", "VariantMatch", "diagnose_exact",
           "SURROGATES"]
