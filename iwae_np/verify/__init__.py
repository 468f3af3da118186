"""Numerical verification: finite differences, the paper's gradient identity, array comparison, random problems.

- :mod:`iwae_np.verify.gradcheck`: ``iwae-np check``: autograd against central differences and against
  :math:`\\nabla \\mathcal L_k = \\sum_i \\tilde w_i \\nabla \\log w_i` (paper eq. 14);
- :mod:`iwae_np.verify.compare`: the relative error every comparison in the package uses;
- :mod:`iwae_np.verify.problems`: small random models, images and noise.
"""
from .compare import ArrayError, array_error
from .gradcheck import (FD_RTOL, IDENTITY_RTOL, GradientCheckRow, check_model, compare_gradients,
                        finite_difference_gradient, format_table)
from .problems import SMALL_ARCHITECTURES, random_problem

__all__ = ["ArrayError", "array_error", "FD_RTOL", "IDENTITY_RTOL", "GradientCheckRow", "check_model",
           "compare_gradients", "finite_difference_gradient", "format_table", "SMALL_ARCHITECTURES",
           "random_problem"]
