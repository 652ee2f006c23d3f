"""Reading run directories: run.json (schema infertune-run/1, reports/run_schema.json) and
the artifacts beside it. The writer is infertune/rundir.py; both validate against the same
schema file, so what one writes the other reads.

The schema covers every field a report reads (tuning, telemetry, peaks, profilers, models,
measurements), so a report never meets a value of the wrong type: a run that breaks it is a
RunDirError naming the file and the field as a JSON pointer. One keyword is ours, `finite`
(true: a number must not be NaN or +/-Infinity, which Python's json reads and writes); other
validators ignore it. Files nested deeper than MAX_DEPTH or larger than MAX_BYTES are refused
before validation."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA = "infertune-run/1"
MAX_DEPTH = 64  # a real run.json is about 8 deep
MAX_BYTES = 256 * 2**20


def one_line(text: str) -> str:
    """`text` with control characters (newlines included) escaped, so it prints on one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def quote(path: Any) -> str:
    """A user-supplied path for a message: repr-like quotes, control characters escaped."""
    return repr(str(path))


class RunDirError(ValueError):
    """A run directory that cannot be read: missing, corrupt or of another schema (one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("reports").joinpath("run_schema.json").read_text())


def _finite(validator, wanted, instance, _schema):
    from jsonschema.exceptions import ValidationError

    if wanted and isinstance(instance, float) and not math.isfinite(instance):
        yield ValidationError(f"{instance!r} is not a finite number")


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"finite": _finite})
    return cls(schema())


def pointer(path) -> str:
    """A JSON pointer (RFC 6901) for a jsonschema error path: /tuning/0/best/median_ms."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "(top)"


def _order(error) -> list[tuple[int, Any]]:
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path]


def validate(data: dict[str, Any]) -> None:
    """Raise RunDirError (one line: the first violation and where) unless `data` follows the schema."""
    errors = sorted(_validator().iter_errors(data), key=_order)
    if errors:
        first = errors[0]
        message = first.message if len(first.message) <= 300 else first.message[:300] + "..."
        raise RunDirError(f"run.json does not follow {SCHEMA}: at {pointer(first.absolute_path)}: {message}")


def depth(data: Any) -> int:
    """How deeply `data` nests lists and dicts (a scalar is 0). Iterative: no recursion limit."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level  # deep enough to refuse; do not walk the rest
        stack.extend((c, level + 1) for c in children)
    return deepest


def read_run(path: str | Path) -> dict[str, Any]:
    """run.json of a run directory (or the file itself), validated. Raises RunDirError."""
    p = Path(path)
    try:
        file = p / "run.json" if p.is_dir() else p
        if not file.is_file():
            raise RunDirError(f"{quote(path)} is not a run directory (no run.json)")
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise RunDirError(f"{quote(file)} is {size:,} bytes, more than a run.json may be ({MAX_BYTES:,})")
        text = file.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        if isinstance(exc, RunDirError):
            raise
        raise RunDirError(f"{quote(path)} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{quote(file)} is not readable JSON: {exc}") from None
    except RecursionError:
        raise RunDirError(f"{quote(file)} nests JSON deeper than {MAX_DEPTH} levels") from None
    if depth(data) > MAX_DEPTH:
        raise RunDirError(f"{quote(file)} nests JSON deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise RunDirError(f"{quote(file)} is not an infertune run (schema {found!r}, expected {SCHEMA!r})"[:400])
    try:
        validate(data)
    except RunDirError as exc:
        raise RunDirError(f"{quote(file)}: {exc}") from None
    return data
