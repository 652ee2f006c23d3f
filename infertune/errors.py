"""Errors for bad user input outside the kernel library (e.g. a malformed --opt)."""


class UsageError(ValueError):
    """Bad input from a user: the CLI prints the message on one line and exits 2."""


class KernelFailed(RuntimeError):
    """A kernel raised while it ran (a compile error, Triton's interpreter failing under an
    unsupported numpy, out of resources): not bad input, so the CLI prints its one line and
    exits 1."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, the message's last non-empty line (Triton puts the cause there)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
