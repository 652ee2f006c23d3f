"""A per-layer quantization plan: which linear layers keep higher precision.

The file is JSON, reviewable and hand-editable:

    {"format": "infertune-quant-plan/1",
     "model": "smollm2-135m",
     "default": "int4-g128",
     "layers": {"layers.0.*": "int8", "layers.*.down": "int8", "layers.29.qkv": "none"}}

Layer names are the runtime's linear layers: `layers.{i}.qkv`, `layers.{i}.o`,
`layers.{i}.gate_up`, `layers.{i}.down` (decoders), `layers.{i}.qkv/o/up/down`
(encoders); keys are exact names or fnmatch patterns. An exact name beats a pattern, and a
longer pattern beats a shorter one (`layers.3.*` over `layers.*`). Schemes are
runtime.linear.SCHEMES ("none" keeps the model dtype); the variant spellings are aliases
(`w8`, `w4g128`, `fp8`: kernels/scheme_names.py) and are read as the canonical names. A plan overrides the variant's
weight scheme layer by layer; the variant's scheme is the default when the plan has none.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kernels.scheme_names import canonical_scheme

from .errors import ModelError
from .linear import SCHEMES

FORMAT = "infertune-quant-plan/1"


class InvalidPlan(ModelError):
    """A plan file that cannot be read or names an unknown scheme (one line)."""


@dataclass(frozen=True)
class Plan:
    default: str | None = None                       # None: the variant's scheme
    layers: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    notes: Mapping[str, object] = field(default_factory=dict)  # what the search measured

    def __post_init__(self) -> None:
        # One spelling per scheme: "w4g128" in a hand-written plan is "int4-g128".
        object.__setattr__(self, "default", _canonical(self.default))
        object.__setattr__(self, "layers", {k: _canonical(v) for k, v in self.layers.items()})
        for key, scheme in [("default", self.default), *self.layers.items()]:
            if scheme is not None and scheme not in SCHEMES:
                raise InvalidPlan(f"plan: {key} has unknown scheme {scheme!r}; schemes: {', '.join(SCHEMES)} "
                                  "(w8, w4gN and fp8 are accepted for int8, int4-gN and fp8-row)")

    def scheme_for(self, name: str, fallback: str) -> str:
        """The scheme of layer `name`; `fallback` (the variant's) when nothing matches."""
        if name in self.layers:
            return self.layers[name]
        matches = [p for p in self.layers if fnmatch.fnmatchcase(name, p)]
        if matches:
            return self.layers[max(matches, key=len)]
        return self.default if self.default is not None else fallback

    def resolve(self, names: Iterable[str], fallback: str) -> dict[str, str]:
        return {n: self.scheme_for(n, fallback) for n in names}

    def to_dict(self) -> dict:
        return {"format": FORMAT, "model": self.model, "default": self.default,
                "layers": dict(sorted(self.layers.items())), "notes": dict(self.notes)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")


def _canonical(scheme):
    return canonical_scheme(scheme) if isinstance(scheme, str) else scheme


def load_plan(path: str | Path) -> Plan:
    """Read a plan file. Raises InvalidPlan (one line) for a missing, malformed or foreign file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidPlan(f"plan file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPlan(f"plan file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidPlan(f"{path} is not an infertune quantization plan (format {FORMAT!r} expected)")
    layers = data.get("layers") or {}
    if not isinstance(layers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in layers.items()):
        raise InvalidPlan(f"{path}: 'layers' must map layer names or patterns to scheme names")
    return Plan(default=data.get("default"), layers=layers, model=data.get("model"), notes=data.get("notes") or {})
