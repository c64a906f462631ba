"""Exception types. Every error names what was wrong (file, tensor, field, op) and why."""


class PrismError(Exception):
    """Base class of all Prism errors."""


class BundleError(PrismError):
    """A deployment bundle is missing, corrupt, or written by an incompatible Prism."""


class InputError(PrismError, ValueError):
    """An input tensor, frame or argument does not match what was expected."""
