"""The fast engine's differentiation: autograd through one flat parameter buffer.

The parameter tree is handed to the function as views into one flat buffer, one autograd node per
network (:func:`iwae_np.fast.primitives.tree_views`), so the gradient comes back as one flat array
whose named views are the gradient tree, which :func:`iwae_np.fast.adam_update` updates in one pass.
"""
import functools

from autograd import make_vjp, value_and_grad

from .buffers import new_buffer
from .flat import pack_tree
from .primitives import tree_views

__all__ = ["tree_make_vjp", "tree_value_and_grad", "tree_grad"]


def _flat(params):
    """``(flat, layout)`` of a parameter tree that can be differentiated through one buffer, else None."""
    packed = pack_tree(params)
    if packed is None or packed[1].units is None:
        return None
    return packed[0], packed[1]


def tree_make_vjp(fun):
    r"""autograd's ``make_vjp`` of ``fun(params, *args)`` with respect to the parameter tree ``params``.

    ``tree_make_vjp(fun)(params, *args)`` returns ``(vjp, value)``; ``vjp(c)`` is the gradient tree of
    :math:`\sum c \cdot` ``fun``, named like ``params``, views into one fresh flat buffer per call.
    Trees that share no buffer (arrays of several dtypes) are differentiated as they are.
    """
    @functools.wraps(fun)
    def vjp_and_value(params, *args, **kwargs):
        found = _flat(params)
        if found is None:
            return make_vjp(lambda p: fun(p, *args, **kwargs))(params)
        flat, layout = found
        vjp, value = make_vjp(lambda f: fun(tree_views(f, layout), *args, **kwargs))(flat)
        return (lambda c: layout.views(vjp(c))), value
    return vjp_and_value


def tree_value_and_grad(fun):
    """``(value, gradient tree)`` of a scalar ``fun(params, *args)``, as autograd's ``value_and_grad`` (see :func:`tree_make_vjp`)."""
    @functools.wraps(fun)
    def value_and_gradient(params, *args, **kwargs):
        found = _flat(params)
        if found is None:
            return value_and_grad(fun)(params, *args, **kwargs)
        flat, layout = found
        grad_out = new_buffer(layout.size, layout.dtype, zero=True)
        value, g = value_and_grad(lambda f: fun(tree_views(f, layout, grad_out), *args, **kwargs))(flat)
        return value, layout.views(g)
    return value_and_gradient


def tree_grad(fun):
    """The gradient tree of a scalar ``fun(params, *args)``, as autograd's ``grad`` (see :func:`tree_make_vjp`)."""
    value_and_gradient = tree_value_and_grad(fun)

    @functools.wraps(fun)
    def gradient(params, *args, **kwargs):
        return value_and_gradient(params, *args, **kwargs)[1]
    return gradient
