"""iwae_np: Importance Weighted Autoencoders (Burda, Grosse & Salakhutdinov, ICLR 2016) in NumPy + autograd.

The definition, the paper's math in plain autograd, one module per concept, flat at the top (they
import only each other):

- :mod:`iwae_np.special`: stable ``logsumexp``, ``log_mean_exp``, ``softplus``, ``softmax``
- :mod:`iwae_np.densities`: Gaussian and Bernoulli log densities
- :mod:`iwae_np.networks`: dense layers and tanh MLPs, Glorot init
- :mod:`iwae_np.model`: architectures, parameters, reparameterized sampling, log p(x, h), log q(h|x), log w
- :mod:`iwae_np.bounds`: the VAE and IWAE bounds (and MIWAE, CIWAE, Renyi), their gradients by autograd (eq. 7, 14)
- :mod:`iwae_np.gradients`: eq. 7 and 14 written out as weighted sums of per-sample gradients
- :mod:`iwae_np.estimators`: STL, DReG, RWS and PIWAE gradients; the training objectives by name
- :mod:`iwae_np.optimizers`: Adam over a parameter tree
- :mod:`iwae_np.tree`, :mod:`iwae_np.validation`: nested dicts of arrays; input checks

The fast engine beside it, the same numbers computed for speed and proven equal by the tests:
:mod:`iwae_np.fast` (:mod:`iwae_np.engines` names the two for the drivers).

Drivers and I/O below them, in subpackages (they import the math, never the other way):

- :mod:`iwae_np.data`: readers, downloads, the named data sets, dynamic binarization
- :mod:`iwae_np.experiments`: the training protocol, checkpoints, L_5000 evaluation and active units,
  the Table 1 grid (on a Dask cluster too), figures, the SNR study
- :mod:`iwae_np.verify`: finite-difference and identity checks (``iwae-np check``)
- :mod:`iwae_np.oracle`: golden fixtures for other frameworks and the checks of their results
- :mod:`iwae_np.cli`: the ``iwae-np`` command line
"""
import importlib

from .version import __version__

#: The public API, grouped as the package is: module -> the names it offers here. Every name loads its module
#: when first used, so that ``import iwae_np.model`` loads the definition alone (never the fast engine, which
#: training reaches through :mod:`iwae_np.engines`), and the command line starts, and answers Ctrl-C, before
#: numpy, scipy and autograd have loaded.
_EXPORTS = {
    # the paper's math (the definition)
    "special": ("logsumexp", "log_mean_exp", "softplus", "softmax", "sigmoid"),
    "densities": ("gaussian_log_density", "standard_normal_log_density", "bernoulli_log_likelihood"),
    "networks": ("dense", "tanh_mlp", "init_dense"),
    "model": ("Architecture", "PRESETS", "get_architecture", "init_params", "sample_eps", "sample_posterior",
              "generative_log_density", "recognition_log_density", "log_weight_terms", "log_importance_weights",
              "sample_generative"),
    "bounds": ("vae_bound", "iwae_bound", "normalized_weights", "miwae_bound", "ciwae_bound", "renyi_bound",
               "vae_objective", "iwae_objective", "vae_gradient", "iwae_gradient"),
    "gradients": ("log_weight_gradients", "importance_weighted_gradient", "average_gradient"),
    "estimators": ("OBJECTIVES", "ESTIMATORS", "estimate_gradient", "stl_gradient", "dreg_gradient", "rws_gradient",
                   "piwae_gradient"),
    "optimizers": ("adam_init", "adam_update", "PAPER_ADAM", "NonFiniteGradientError"),
    "tree": ("flatten_tree", "tree_map"),
    "validation": ("NonFiniteLogWeightError",),
    # the two engines by name
    "engines": ("ENGINES", "get_engine"),
    # training and evaluation
    "data": ("DATASETS", "load_dataset", "binarize"),
    "experiments": ("TrainConfig", "train", "train_step", "paper_schedule", "iwae_log_likelihood", "active_units",
                    "NonFiniteLossError", "CheckpointError"),
    # checks: gradients here, other frameworks' results against the oracle (the definition's answer key)
    "verify": ("check_model", "finite_difference_gradient", "compare_gradients"),
    "oracle": ("export_suite", "check_results", "replay_check", "statistical_check", "OracleInputError"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__"] + [name for names in _EXPORTS.values() for name in names]


def __getattr__(name):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))
