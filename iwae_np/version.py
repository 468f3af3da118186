"""The version of iwae-np (setup.cfg reads it from here; checkpoints and fixtures record it)."""
__version__ = "0.3.0"
