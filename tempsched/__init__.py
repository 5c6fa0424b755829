"""tempsched: train a population of models side by side and tune a hyperparameter while they learn."""

from tempsched.hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
__version__ = "0.1.0"
