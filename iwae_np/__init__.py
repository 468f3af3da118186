"""iwae_np: Importance Weighted Autoencoders (Burda, Grosse & Salakhutdinov, ICLR 2016) in NumPy + autograd.

The paper's math, one module per concept, flat at the top (they import only each other):

- :mod:`iwae_np.special`: stable ``logsumexp``, ``log_mean_exp``, ``softplus``, ``sigmoid``, ``softmax``
- :mod:`iwae_np.primitives`: the differentiated building blocks with closed-form gradients
- :mod:`iwae_np.densities`: Gaussian and Bernoulli log densities
- :mod:`iwae_np.networks`: dense layers and tanh MLPs, Glorot init
- :mod:`iwae_np.model`: architectures, parameters, reparameterized sampling, log p(x, h), log q(h|x), log w
- :mod:`iwae_np.bounds`: the VAE and IWAE bounds, and MIWAE, CIWAE, Renyi beyond the paper
- :mod:`iwae_np.gradients`: their gradients (paper eq. 7 and 14) and the normalized-weight identity
- :mod:`iwae_np.estimators`: STL, DReG, RWS and PIWAE gradients; training objectives by name
- :mod:`iwae_np.optimizers`: Adam over a parameter tree
- :mod:`iwae_np.tree`: nested dicts of arrays, and the one flat buffer behind a parameter tree
- :mod:`iwae_np.buffers`: work arrays reused from step to step instead of page-faulted afresh

Drivers and I/O below them, in subpackages (they import the math, never the other way):

- :mod:`iwae_np.data`: readers, downloads, the named data sets, dynamic binarization
- :mod:`iwae_np.experiments`: the training protocol, checkpoints, L_5000 evaluation and active units,
  the Table 1 grid (on a Dask cluster too), figures, the SNR study (``iwae-np train``, ``evaluate``, ``table``,
  ``plot``, ``snr``)
- :mod:`iwae_np.verify`: finite-difference and identity checks (``iwae-np check``), array comparison
- :mod:`iwae_np.oracle`: golden fixtures for other frameworks (``iwae-np oracle``; format in docs/oracle.md)
- :mod:`iwae_np.cli`: the ``iwae-np`` command line
- :mod:`iwae_np.files`: the one atomic file writer
"""
__version__ = "0.2.0"

# the paper's math
from .special import log_mean_exp, logsumexp, sigmoid, softmax, softplus
from .densities import bernoulli_log_likelihood, gaussian_log_density, standard_normal_log_density
from .networks import dense, glorot_uniform, init_dense, init_mlp, tanh_mlp
from .model import (PRESETS, Architecture, NonFiniteLogWeightError, architecture_of, generative_log_density,
                    get_architecture, init_params, log_importance_weights, log_weight_terms, recognition_log_density,
                    sample_eps, sample_generative, sample_posterior)
from .bounds import (ciwae_bound, ciwae_objective, iwae_bound, iwae_objective, miwae_bound, miwae_objective,
                     normalized_weights, renyi_bound, renyi_objective, vae_bound, vae_objective)
from .gradients import (average_gradient, importance_weighted_gradient, iwae_gradient,
                        iwae_value_and_gradient, log_weight_gradients, vae_gradient,
                        vae_value_and_gradient)
from .estimators import (ESTIMATORS, ciwae_gradient, dreg_gradient, estimate_gradient, make_objective,
                         miwae_gradient, piwae_gradient, renyi_gradient, rws_gradient, stl_gradient)
from .optimizers import PAPER_ADAM, NonFiniteGradientError, adam_init, adam_update
from .tree import flatten_tree, tree_map, unflatten_tree
# drivers and I/O
from .data import (DATASETS, Dataset, binarize, load_dataset, read_amat, read_idx,
                   read_omniglot_mat)
from .experiments import (CheckpointError, NonFiniteLossError, TrainConfig, active_units, iwae_log_likelihood,
                          load_checkpoint, paper_schedule, save_checkpoint, train, train_step)
from .verify import check_model, compare_gradients, finite_difference_gradient
from .oracle import (check_results, compute_outputs, export_fixture, export_suite, load_fixture, replay_check,
                     statistical_check)

__all__ = [
    "__version__",
    "logsumexp", "log_mean_exp", "softplus", "sigmoid", "softmax",
    "gaussian_log_density", "standard_normal_log_density", "bernoulli_log_likelihood",
    "glorot_uniform", "init_dense", "dense", "init_mlp", "tanh_mlp",
    "Architecture", "PRESETS", "get_architecture", "init_params", "architecture_of", "sample_eps",
    "sample_posterior", "log_weight_terms", "log_importance_weights", "sample_generative",
    "generative_log_density", "recognition_log_density",
    "vae_bound", "iwae_bound", "normalized_weights", "vae_objective", "iwae_objective",
    "vae_gradient", "iwae_gradient", "vae_value_and_gradient", "iwae_value_and_gradient",
    "log_weight_gradients", "importance_weighted_gradient", "average_gradient",
    "adam_init", "adam_update", "PAPER_ADAM", "train_step",
    "paper_schedule", "TrainConfig", "train", "NonFiniteLossError", "save_checkpoint", "load_checkpoint",
    "iwae_log_likelihood", "active_units",
    "finite_difference_gradient", "compare_gradients", "check_model",
    "flatten_tree", "unflatten_tree", "tree_map",
    "DATASETS", "Dataset", "load_dataset", "binarize", "read_idx", "read_amat", "read_omniglot_mat",
    "miwae_bound", "ciwae_bound", "renyi_bound", "miwae_objective", "ciwae_objective", "renyi_objective",
    "ESTIMATORS", "stl_gradient", "dreg_gradient", "rws_gradient", "piwae_gradient", "miwae_gradient",
    "ciwae_gradient", "renyi_gradient", "estimate_gradient", "make_objective",
    "export_fixture", "export_suite", "load_fixture", "compute_outputs", "check_results",
    "replay_check", "statistical_check",
    "NonFiniteLogWeightError", "NonFiniteGradientError", "CheckpointError",
]
