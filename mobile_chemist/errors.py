"""Exceptions shared across the library."""


class ConfigError(ValueError):
    """A configuration file or section is invalid; the message names the file and key."""


class InfeasibleFormulationError(ValueError):
    """A formulation lies outside the search space, off its grid or violates a constraint."""
