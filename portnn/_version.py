"""The version of portnn, in a module of its own that imports nothing, so any part of the package can read it."""

__version__ = "0.1.0"
