"""The package version, in a module of its own so that any layer can record it in a result
without importing the package root (which imports every layer)."""
__version__ = "0.1.0"
