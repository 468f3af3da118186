"""Subcommands of ``iwae-np``; see :mod:`iwae_np.cli`."""
