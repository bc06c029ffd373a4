"""Bayesian hierarchical linear regression, taught with Bambi: the book's shared code."""

__version__ = "0.1.0"
