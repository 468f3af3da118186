"""The oracle's internals (issues 17, 19 and 20): its key names live in one module, its modules import each
other one way, its inputs are validated before anything is computed, and each defect found by trying it as a
user would has a test here, named after it."""
import ast
from pathlib import Path

import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.oracle import keys
from iwae_np.oracle.quantities import BOUNDS, GRADIENTS

ORACLE = Path(oracle.__file__).parent


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("internals") / "two"
    oracle.export_fixture(path, "small-two-layer", k=5, batch=3, seed=21)
    return path


# ---------------------------------------------------------------------------------------------
# structure (issue 17, section 5)


def test_compute_outputs_writes_exactly_the_keys_and_shapes_of_the_keys_module(two_layer):
    # catches: a new quantity added to compute_outputs but not to the keys every reader checks (or the reverse),
    # and a term named by the model differently from the documented name
    fixture = oracle.load_fixture(two_layer)
    params, x, eps = fixture.model_inputs()
    outputs = oracle.compute_outputs(params, x, eps, fixture.manifest["settings"])
    shapes = keys.manifest_output_shapes(fixture.manifest)
    assert {key: np.shape(v) for key, v in outputs.items()} == shapes
    assert list(BOUNDS) == list(keys.BOUND_NAMES) and list(GRADIENTS) == list(keys.GRADIENT_NAMES)
    assert fixture.manifest["bounds"] == list(keys.BOUND_NAMES)
    assert set(fixture.outputs) == set(shapes)
    draws = keys.manifest_draw_shapes(fixture.manifest)
    assert set(draws) == {k for k in shapes if k.startswith(("bound", "grad."))}


def _function_level_imports(path):
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"{path.name}:{n.lineno}" for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def test_oracle_has_no_function_level_import_and_no_import_circle():
    # catches: the format.py <-> quantities.py circle broken by an import inside expected_outputs, and any new
    # function-level import (none is needed: no cycle is left and no heavy optional dependency is imported)
    assert [f for p in sorted(ORACLE.glob("*.py")) for f in _function_level_imports(p)] == []
    graph = {}
    for path in ORACLE.glob("*.py"):
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                deps.add(node.module.split(".")[0])
        graph[path.stem] = deps

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, (*seen, d))) for d in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)], graph
    assert "quantities" not in graph["format"]


def test_the_fixture_format_names_every_objective_and_estimator_of_the_registry():
    # one registry of objectives (iwae_np.estimators.OBJECTIVES): the format's lists must name exactly what it
    # offers, so a new objective or estimator cannot be left out of the oracle without a failing test
    from iwae_np.estimators import ESTIMATORS, OBJECTIVES
    from iwae_np.oracle.keys import BOUND_NAMES, GRADIENT_NAMES
    assert set(BOUND_NAMES) == set(OBJECTIVES) - {"piwae"}  # PIWAE reports IWAE's bound
    assert set(GRADIENT_NAMES) == set(OBJECTIVES) | (set(ESTIMATORS) - {"iwae"})
