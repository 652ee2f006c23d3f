"""Errors for bad user input outside the kernel library (e.g. a malformed --opt)."""


class UsageError(ValueError):
    """Bad input from a user: the CLI prints the message on one line and exits 2."""
