"""Errors the kernel library raises for bad input. Each carries a one-line message for users."""


class KernelError(ValueError):
    """Base class: bad input to the kernel library (the CLI prints the message and exits 2)."""


class UnknownKernel(KernelError):
    pass


class InvalidProblem(KernelError):
    """A malformed shape, an unsupported dtype or option, or a problem the kernel cannot solve."""


class InvalidConfig(KernelError):
    """A config with unknown parameters or one that breaks the kernel's constraints."""


class UnsupportedOnDevice(KernelError):
    """The device cannot run this kernel or dtype (e.g. fp8 below compute capability 8.9)."""
