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

# the paper's math (the definition)
from .special import log_mean_exp, logsumexp, sigmoid, softmax, softplus
from .densities import bernoulli_log_likelihood, gaussian_log_density, standard_normal_log_density
from .networks import dense, init_dense, tanh_mlp
from .model import (PRESETS, Architecture, generative_log_density, get_architecture, init_params,
                    log_importance_weights, log_weight_terms, recognition_log_density, sample_eps, sample_generative,
                    sample_posterior)
from .validation import NonFiniteLogWeightError
from .bounds import (ciwae_bound, iwae_bound, iwae_gradient, iwae_objective, miwae_bound, normalized_weights,
                     renyi_bound, vae_bound, vae_gradient, vae_objective)
from .gradients import average_gradient, importance_weighted_gradient, log_weight_gradients
from .estimators import (ESTIMATORS, OBJECTIVES, dreg_gradient, estimate_gradient, piwae_gradient, rws_gradient,
                         stl_gradient)
from .optimizers import PAPER_ADAM, NonFiniteGradientError, adam_init, adam_update
from .tree import flatten_tree, tree_map
# verification here, and the checks of other frameworks' results against the oracle (definition only)
from .verify import check_model, compare_gradients, finite_difference_gradient
from .oracle import OracleInputError, check_results, export_suite, replay_check, statistical_check
from .data import DATASETS, binarize, load_dataset

#: The drivers, loaded when first used, so that importing the definition never loads the fast engine
#: (training and evaluation run on :mod:`iwae_np.engines`, which imports :mod:`iwae_np.fast`).
_LAZY = {"ENGINES": "engines", "get_engine": "engines",
         **{name: "experiments" for name in ("CheckpointError", "NonFiniteLossError", "TrainConfig", "active_units",
                                             "iwae_log_likelihood", "paper_schedule", "train", "train_step")}}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    # special, densities, networks
    "logsumexp", "log_mean_exp", "softplus", "softmax", "sigmoid",
    "gaussian_log_density", "standard_normal_log_density", "bernoulli_log_likelihood", "dense", "tanh_mlp",
    "init_dense",
    # model
    "Architecture", "PRESETS", "get_architecture", "init_params", "sample_eps", "sample_posterior",
    "generative_log_density", "recognition_log_density", "log_weight_terms", "log_importance_weights",
    "sample_generative",
    # bounds and gradients
    "vae_bound", "iwae_bound", "normalized_weights", "miwae_bound", "ciwae_bound", "renyi_bound",
    "vae_objective", "iwae_objective", "vae_gradient", "iwae_gradient",
    "log_weight_gradients", "importance_weighted_gradient", "average_gradient",
    "OBJECTIVES", "ESTIMATORS", "estimate_gradient", "stl_gradient", "dreg_gradient", "rws_gradient", "piwae_gradient",
    # optimizer
    "adam_init", "adam_update", "PAPER_ADAM",
    # parameter trees (named like checkpoints and fixtures)
    "flatten_tree", "tree_map",
    # engines
    "ENGINES", "get_engine",
    # training and evaluation
    "DATASETS", "load_dataset", "binarize", "TrainConfig", "train", "train_step", "paper_schedule",
    "iwae_log_likelihood", "active_units",
    # checks
    "check_model", "finite_difference_gradient", "compare_gradients", "export_suite", "check_results", "replay_check", "statistical_check",
    # errors
    "NonFiniteLogWeightError", "NonFiniteGradientError", "NonFiniteLossError", "CheckpointError", "OracleInputError",
]
