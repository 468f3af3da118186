"""The package's layout: imports run one way, from drivers to the paper's math, never back.

Catches: a math module importing a driver (say ``model`` importing ``experiments`` for a helper) or the
fast engine (the definition must stay plain autograd), the oracle computing its answer key with the
fast engine, a driver importing the command line, ``data`` depending on training code, a new module
nobody placed.
"""
import subprocess
import sys
import ast
from pathlib import Path

import iwae_np

PACKAGE = Path(iwae_np.__file__).parent

#: The paper's math (the definition), flat at the top: these import only each other.
MATH = {"special", "densities", "networks", "model", "bounds", "gradients", "estimators", "optimizers", "tree",
        "validation", "version"}
#: What each part of the package may import from the package (besides itself and ``iwae_np.__version__``).
#: The oracle and ``iwae-np check`` use the definition only: neither may import the fast engine.
ALLOWED = {
    "math": set(),
    "fast": {"math"},
    "engines": {"math", "fast"},
    "files": set(),
    "data": {"files"},
    "verify": {"math"},
    "experiments": {"math", "engines", "files", "data"},
    "oracle": {"math", "files", "verify"},
    "cli": {"math", "engines", "files", "data", "verify", "experiments", "oracle"},
}


def _part(module):
    """``iwae_np.model`` -> ``math``; ``iwae_np.experiments.training`` -> ``experiments``."""
    top = module.split(".")[1] if "." in module else ""
    return "math" if top in MATH else top


def _imports(path, root=PACKAGE.parent):
    """Absolute names of the ``iwae_np`` modules imported by the file at ``path`` (under ``root``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]  # the package the file is in (for a package's __init__, the package itself)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "iwae_np":
                continue
            if module == "iwae_np":  # from iwae_np import name: a module or a re-exported name
                found += [f"iwae_np.{a.name}" for a in node.names if a.name != "__version__"]
            else:
                found.append(module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "iwae_np"]
    return found


def violations(paths, root=PACKAGE.parent):
    """Every import among ``paths`` that goes against :data:`ALLOWED`."""
    out = []
    for path in paths:
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        if module == "iwae_np.__init__":  # the public API re-exports every part
            continue
        part = _part(module)
        for imported in _imports(path, root):
            other = _part(imported)
            if other != part and other not in ALLOWED[part]:
                out.append(f"{module} ({part}) imports {imported} ({other})")
    return out


def test_every_module_belongs_to_a_part():
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if module in ("iwae_np.__init__",):
            continue
        assert _part(module) in ALLOWED, f"{module} belongs to no part of the layout; place it in ALLOWED"


def test_imports_run_from_drivers_to_the_math():
    found = violations(list(PACKAGE.rglob("*.py")))
    assert not found, "imports against the layout:\n" + "\n".join(found)


def test_a_wrong_import_is_reported(tmp_path):
    # the check above must be able to fail: the math importing a driver, data importing training
    (tmp_path / "iwae_np" / "data").mkdir(parents=True)
    model = tmp_path / "iwae_np" / "model.py"
    model.write_text("from .special import softplus\nfrom .experiments.training import train\n")
    reader = tmp_path / "iwae_np" / "data" / "readers.py"
    reader.write_text("from ..files import atomic_write\nfrom ..experiments import training\n")
    assert violations([model, reader], tmp_path) == [
        "iwae_np.model (math) imports iwae_np.experiments.training (experiments)",
        "iwae_np.data.readers (data) imports iwae_np.experiments (experiments)"]


def test_importing_the_definition_loads_nothing_of_the_fast_engine():
    # in a fresh interpreter: the math modules (and the package __init__ they run) never reach iwae_np.fast
    code = ("import sys, iwae_np.networks, iwae_np.densities, iwae_np.model, iwae_np.bounds, iwae_np.gradients, "
            "iwae_np.estimators, iwae_np.optimizers, iwae_np.verify, iwae_np.oracle; "
            "print(sorted(m for m in sys.modules if m.startswith(('iwae_np.fast', 'iwae_np.engines'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    # and the package still offers the drivers, loaded when first used
    code = "import sys, iwae_np; iwae_np.train; print('iwae_np.fast' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
