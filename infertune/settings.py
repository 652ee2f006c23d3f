"""Typed settings in one place: each has an environment variable and a default.
A command-line flag beats the environment, which beats the default.

Three variables are read by the kernels themselves, at launch, since `kernels/` imports
nothing of ours; the GPU kit measures each default against its alternative:
- INFERTUNE_INT4_DEQUANT=asm|bits (kernels/matmul_w4a16.py; default asm, the PTX nibble
  unpacking on a GPU; bits, Triton's lowering);
- INFERTUNE_SPLITK_REDUCE=serial|kernel (kernels/splitk.py; default serial, split-K's
  partials, and attention_decode's split-KV partials, combined by the last split inside
  the launch; kernel, a second launch);
- INFERTUNE_PDL=0|1 (kernels/pdl.py; default 0; 1 launches the decode path's kernels with
  programmatic dependent launch on compute capability 9+, which the kit's runtime step
  measures against 0)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from tuner.location import default_db_path


@dataclass(frozen=True)
class Settings:
    warmup_ms: float = 25.0  # INFERTUNE_WARMUP_MS: warm-up budget per timed function
    rep_ms: float = 100.0  # INFERTUNE_REP_MS: budget for the timed repetitions
    min_reps: int = 10  # INFERTUNE_MIN_REPS: fewest timed repetitions on a GPU
    min_reps_cpu: int = 3  # INFERTUNE_MIN_REPS_CPU: on the CPU the interpreter takes seconds a call
    # INFERTUNE_DB: the tuned config database (a path or an SQLAlchemy URL); default
    # $XDG_DATA_HOME/infertune/tuning.db, else ~/.local/share/infertune/tuning.db. --db beats it.
    db: str = field(default_factory=default_db_path)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            warmup_ms=_number(env, "INFERTUNE_WARMUP_MS", defaults.warmup_ms, float),
            rep_ms=_number(env, "INFERTUNE_REP_MS", defaults.rep_ms, float),
            min_reps=_number(env, "INFERTUNE_MIN_REPS", defaults.min_reps, int),
            min_reps_cpu=_number(env, "INFERTUNE_MIN_REPS_CPU", defaults.min_reps_cpu, int),
            db=default_db_path(env),
        )


class SettingError(ValueError):
    pass


def _number(env, name, default, kind):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        if not raw.isascii():  # int() and float() read '١٢' as 12
            raise ValueError(raw)
        value = kind(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not math.isfinite(value) or value < 0:
        raise SettingError(f"{name}={raw!r} must be a finite number >= 0")
    return value
