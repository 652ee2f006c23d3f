"""Token-length distributions for --input-len / --output-len, and seeded draws from them.

    N | fixed:N            every request N tokens
    uniform:A,B            integers A..B inclusive, equally likely
    normal:MEAN,STD        rounded, clipped to >= 1 (and <= MAX_TOKENS)
    lognormal:MEDIAN,SIGMA exp(N(ln MEDIAN, SIGMA)) rounded, clipped the same: the long right tail
                           of real chat traffic (a few very long prompts)

A malformed text is a LengthError (a ValueError) with a one-line message."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# A bound, not a model limit: no server takes a million-token request, and a typo of 10**9
# would make a prompt of gigabytes.
MAX_TOKENS = 1_000_000
KINDS = ("fixed", "uniform", "normal", "lognormal")


class LengthError(ValueError):
    """A distribution text that does not parse (one line)."""


@dataclass(frozen=True)
class LengthDist:
    kind: str                       # one of KINDS
    params: tuple[float, ...]

    @property
    def text(self) -> str:
        """Canonical text, what run.json records: fixed:32, uniform:32,128, normal:64,8.0."""
        return f"{self.kind}:" + ",".join(_num(p) for p in self.params)

    def draw(self, count: int, seed: int) -> list[int]:
        """`count` lengths, each in 1..MAX_TOKENS; same seed -> same list."""
        rng = random.Random(seed)
        if self.kind == "fixed":
            return [int(self.params[0])] * count
        if self.kind == "uniform":
            low, high = int(self.params[0]), int(self.params[1])
            return [rng.randint(low, high) for _ in range(count)]
        if self.kind == "normal":
            mean, std = self.params
            return [_clip(rng.gauss(mean, std)) for _ in range(count)]
        median, sigma = self.params
        return [_clip(rng.lognormvariate(math.log(median), sigma)) for _ in range(count)]

    @property
    def mean(self) -> float:
        """The distribution's mean before clipping (for sizing bounds and messages)."""
        if self.kind == "fixed":
            return self.params[0]
        if self.kind == "uniform":
            return (self.params[0] + self.params[1]) / 2
        if self.kind == "normal":
            return self.params[0]
        return self.params[0] * math.exp(self.params[1] ** 2 / 2)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _q(text: str) -> str:
    """A user's text quoted for a message, cut to 40 characters so the message stays one line."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _clip(x: float) -> int:
    return int(min(max(round(x), 1), MAX_TOKENS))


def parse_length(text: str) -> LengthDist:
    """Parse a distribution text (module docstring). Raises LengthError."""
    raw = text.strip()
    kind, sep, rest = raw.partition(":")
    if not sep:
        kind, rest = "fixed", raw
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise LengthError(f"{_q(text)}: unknown distribution {kind!r}; use N, fixed:N, uniform:A,B, normal:MEAN,STD "
                          "or lognormal:MEDIAN,SIGMA")
    want = {"fixed": 1, "uniform": 2, "normal": 2, "lognormal": 2}[kind]
    parts = [p.strip() for p in rest.split(",")] if rest.strip() else []
    if len(parts) != want:
        shape = {"fixed": "fixed:N", "uniform": "uniform:A,B", "normal": "normal:MEAN,STD",
                 "lognormal": "lognormal:MEDIAN,SIGMA"}[kind]
        raise LengthError(f"{_q(text)}: {kind} takes {want} number{'s' if want > 1 else ''} ({shape})")
    if kind in ("fixed", "uniform"):
        values = tuple(float(_integer(p, text)) for p in parts)
        if any(v < 1 or v > MAX_TOKENS for v in values):
            raise LengthError(f"{_q(text)}: lengths must be 1 to {MAX_TOKENS:,} tokens")
        if kind == "uniform" and values[0] > values[1]:
            raise LengthError(f"{_q(text)}: uniform:A,B needs A <= B")
        return LengthDist(kind, values)
    values = tuple(_real(p, text) for p in parts)
    center, spread = values
    if not 1 <= center <= MAX_TOKENS:
        raise LengthError(f"{_q(text)}: the {'mean' if kind == 'normal' else 'median'} must be 1 to {MAX_TOKENS:,} tokens")
    if spread < 0 or (kind == "lognormal" and spread > 4):  # sigma 4: a 1-in-1000 draw is 10^5x the median
        raise LengthError(f"{_q(text)}: the {'std' if kind == 'normal' else 'sigma'} must be "
                          + (">= 0" if kind == "normal" else "0 to 4"))
    return LengthDist(kind, values)


def _integer(part: str, text: str) -> int:
    if not (part.isascii() and part.isdigit()):
        raise LengthError(f"{_q(text)}: {_q(part)} is not a whole number of tokens")
    if len(part) > 9:  # int() of thousands of digits raises; anything this long is out of range
        raise LengthError(f"{_q(text)}: lengths must be 1 to {MAX_TOKENS:,} tokens")
    return int(part)


def _real(part: str, text: str) -> float:
    try:
        if not part.isascii():
            raise ValueError
        value = float(part)
    except ValueError:
        raise LengthError(f"{_q(text)}: {_q(part)} is not a number") from None
    if not math.isfinite(value):
        raise LengthError(f"{_q(text)}: {_q(part)} is not a finite number")
    return value
