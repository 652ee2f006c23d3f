"""One tuned result: what the database stores and what the search writes, and the one check
(`validate_record`) every record passes on its way into or out of the database.

The fields follow the contract of docs/ARCHITECTURE.md ("Tuned config database").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from kernels.errors import InvalidProblem
from kernels.registry import REGISTRY
from kernels.spec import Config

from .keys import current_source_hash, problem_from_key


@dataclass(frozen=True)
class TuningRecord:
    """The best config found for one (kernel, problem, device, software) and its evidence."""

    kernel: str                      # registry name, e.g. "matmul_w4a16"
    source_hash: str                 # sha256 of the kernel's source (kernels/<name>.py and the helpers it uses)
    device_name: str                 # normalized, e.g. "nvidia-h100-80gb-hbm3"
    capability: str                  # "9.0"; "cpu" on the interpreter
    triton_version: str
    torch_version: str
    dtype: str                       # "bf16"
    quant: str                       # quant scheme or "none"
    problem_key: str                 # spec.shape_key(problem)
    bucket: str                      # bucketed key used for nearest lookups
    shape: dict[str, int]
    config: dict[str, int]
    median_ms: float
    p10_ms: float
    p90_ms: float
    default_ms: float | None         # the heuristic default's median on the same run
    baseline_ms: float | None        # the torch baseline's median on the same run
    trials: int
    interpreter: bool                # True: timed through the CPU interpreter (not GPU speed)
    created: str                     # ISO-8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuningRecord:
        """The inverse of to_dict. Raises ValueError naming a missing or unknown field (the
        values are not checked: see `check_record`)."""
        if not isinstance(data, dict):
            raise InvalidRecord(f"a record must be an object, got {_short(data)}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidRecord(f"unknown record field {_short(unknown[0])}")
        missing = sorted(n for n in names - set(data) if n != "extra")
        if missing:
            raise InvalidRecord(f"record field {missing[0]!r} is missing")
        return cls(**data)


# -- validation ----------------------------------------------------------------------------
# One check for every way a record comes in (autotune's put, `db import`, `db merge`) and
# out (a row read back from the database): a record that fails it is never stored, and a
# stored row that fails it is corrupt (see tuner.database for what readers do with one).

MAX_DIM = 2**31 - 1            # the `m` column is a 32-bit integer on PostgreSQL
MAX_CONFIG_VALUE = 2**20       # no tile, split or warp count comes near a million
MIN_CONFIG_VALUE = 0           # a switch (matmul's TMA) is 0 or 1; tiles and counts are >= 1 by their specs
MAX_TRIALS = 10**9
MAX_MS = 1e9                   # 11.6 days per call: past that a timing is a unit error
MAX_EXTRA_CHARS = 65_536
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEVICE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # what tuner.keys.normalize_device_name makes
_CAPABILITY = re.compile(r"cpu|\d{1,3}\.\d{1,3}")
# Text fields and the width of their column (tuner/db_schema.py); all of them are one line.
_TEXT_FIELDS = {"kernel": 64, "source_hash": 64, "device_name": 128, "capability": 16, "triton_version": 64,
                "torch_version": 64, "dtype": 16, "quant": 32, "problem_key": 512, "bucket": 512, "created": 40}


class InvalidRecord(ValueError):
    """A record that must not be stored (or a stored row that must not be used): the message
    is one line and names the field and the value."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ms(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 <= value <= MAX_MS):
        raise InvalidRecord(f"{name} must be a finite time in ms between 0 and {MAX_MS:g}, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_int_map(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, dict) or not value:
        raise InvalidRecord(f"{name} must be a non-empty object of NAME: integer, got {_short(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise InvalidRecord(f"{name} has a malformed name {_short(key)}")
        if not _is_int(item) or not low <= item <= high:
            raise InvalidRecord(f"{name} value {key}={_short(item)} must be an integer from {low} to {high}")


def check_record(record: TuningRecord) -> None:
    """Check that `record` is well formed, field by field, and consistent with itself: text
    fields are one-line strings that fit their column (device_name a normalized name,
    capability "9.0" or "cpu"); shape and config map names to integers
    in range (dims 1..2**31-1, config values 0..2**20); times are finite, >= 0 and below 1e9 ms
    (default_ms and baseline_ms may be None); 0 <= trials <= 1e9; interpreter is a bool;
    created is ISO-8601; extra is a JSON object; the problem key's dims and dtype are the
    shape's and the dtype field's, and quant is its quant option (or "none").

    Whether the kernel exists and takes these parameters is `validate_record`'s business (a
    stale record of an older kernel version may name other parameters).

    Raises InvalidRecord (one line)."""
    for name, width in _TEXT_FIELDS.items():
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            raise InvalidRecord(f"{name} must be a non-empty string, got {_short(value)}")
        if len(value) > width or not value.isprintable():
            raise InvalidRecord(f"{name} must be one printable line of at most {width} characters, got {_short(value)}")
    if not _NAME.fullmatch(record.kernel):
        raise InvalidRecord(f"kernel must be a registry name, got {_short(record.kernel)}")
    if not _DEVICE.fullmatch(record.device_name):  # also a file name: `db export` writes <device_name>.json
        raise InvalidRecord(f"device_name must be a normalized name (a-z, 0-9, -), got {_short(record.device_name)}")
    if not _CAPABILITY.fullmatch(record.capability):
        raise InvalidRecord(f"capability must be MAJOR.MINOR or cpu, got {_short(record.capability)}")
    if not re.search(r"\d", record.triton_version):
        raise InvalidRecord(f"triton_version is not a version: {_short(record.triton_version)}")
    try:
        datetime.fromisoformat(record.created)
    except ValueError:
        raise InvalidRecord(f"created must be an ISO-8601 time, got {_short(record.created)}") from None
    _check_int_map("shape", record.shape, 1, MAX_DIM)
    _check_int_map("config", record.config, MIN_CONFIG_VALUE, MAX_CONFIG_VALUE)
    for name in ("median_ms", "p10_ms", "p90_ms"):
        _check_ms(name, getattr(record, name), optional=False)
    for name in ("default_ms", "baseline_ms"):
        _check_ms(name, getattr(record, name), optional=True)
    if not _is_int(record.trials) or not 0 <= record.trials <= MAX_TRIALS:
        raise InvalidRecord(f"trials must be an integer from 0 to {MAX_TRIALS}, got {_short(record.trials)}")
    if not isinstance(record.interpreter, bool):
        raise InvalidRecord(f"interpreter must be true or false, got {_short(record.interpreter)}")
    if not isinstance(record.extra, dict):
        raise InvalidRecord(f"extra must be an object, got {_short(record.extra)}")
    try:
        extra_text = json.dumps(record.extra, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(f"extra is not plain JSON: {exc}") from None
    if len(extra_text) > MAX_EXTRA_CHARS:
        raise InvalidRecord(f"extra is {len(extra_text)} characters of JSON, more than {MAX_EXTRA_CHARS}")
    check_extra(record.extra)
    _check_key(record)


# The keys of `extra` that code reads back (lookup marks, device matching, reports); each is
# optional and type-checked when present. Any other key is free-form evidence.
EXTRA_TYPES = {
    "confirmed": "a boolean (end-to-end confirmation's verdict)",
    "confirmation": "an object (end-to-end confirmation's evidence)",
    "transferred_from": "a normalized device name (the GPU the record was copied from)",
    "transfer": "an object (what the transfer checked)",
    "ci_ms": "[low, high] in ms (bootstrap interval of the median)",
    "noise": "an object (the noise guard's counts)",
    "device": "an object {sm_count, total_memory} of positive integers",
}


def check_extra(extra: dict[str, Any]) -> None:
    """Check the standard keys of a record's `extra` (EXTRA_TYPES). Raises InvalidRecord."""
    def bad(key: str) -> InvalidRecord:
        return InvalidRecord(f"extra[{key!r}] must be {EXTRA_TYPES[key]}, got {_short(extra[key])}")

    if "confirmed" in extra and not isinstance(extra["confirmed"], bool):
        raise bad("confirmed")
    for key in ("confirmation", "transfer", "noise"):
        if key in extra and not isinstance(extra[key], dict):
            raise bad(key)
    if "transferred_from" in extra and not (isinstance(extra["transferred_from"], str)
                                            and _DEVICE.fullmatch(extra["transferred_from"])
                                            and len(extra["transferred_from"]) <= 128):
        raise bad("transferred_from")
    if "ci_ms" in extra:
        ci = extra["ci_ms"]
        if not (isinstance(ci, list) and len(ci) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= MAX_MS for v in ci)
                and ci[0] <= ci[1]):
            raise bad("ci_ms")
    if "device" in extra:
        device = extra["device"]
        if not (isinstance(device, dict) and set(device) == {"sm_count", "total_memory"}
                and all(_is_int(v) and v > 0 for v in device.values())):
            raise bad("device")


def _check_key(record: TuningRecord) -> None:
    shape_text, _, rest = record.problem_key.partition("|")
    dtype, *options = rest.split("|") if rest else [""]
    key_shape: dict[str, int] = {}
    for part in filter(None, shape_text.split(",")):
        name, sep, value = part.partition("=")
        if not sep or not value.isdigit() or not value.isascii():
            raise InvalidRecord(f"problem_key {_short(record.problem_key)} is malformed")
        key_shape[name] = int(value)
    if key_shape != record.shape:
        raise InvalidRecord(f"problem_key {_short(record.problem_key)} does not match shape {_short(record.shape)}")
    if dtype != record.dtype:
        raise InvalidRecord(f"problem_key {_short(record.problem_key)} does not match dtype {_short(record.dtype)}")
    opts = dict(o.partition("=")[::2] for o in options)
    if opts.get("quant", "none") != record.quant:
        raise InvalidRecord(f"problem_key {_short(record.problem_key)} does not match quant {_short(record.quant)}")


def validate_record(record: TuningRecord) -> None:
    """The one check of a record, on every way in and out of the database: well formed
    (`tuner.record.check_record`: types, ranges, one-line strings, key consistent with shape,
    dtype and quant) and, for a record of a registered kernel with its current source hash
    (one this code could have written), a problem key the kernel accepts, written the way it
    writes it, and a config of exactly its parameters (the bucket is not compared: it is
    informative, and its rule lives outside the kernel's source hash). A record
    of an older kernel source is only checked for form: it is stale, kept until pruned.

    Raises InvalidRecord (one line)."""
    check_record(record)
    spec = next((s for s in REGISTRY if s.name == record.kernel), None)
    if spec is None or record.source_hash != current_source_hash(spec):
        return
    try:
        problem = problem_from_key(spec, record.problem_key)
    except InvalidProblem as exc:
        raise InvalidRecord(f"problem_key {record.problem_key!r}: {exc}") from None
    if spec.shape_key(problem) != record.problem_key:
        raise InvalidRecord(f"problem_key {record.problem_key!r} is not written as {spec.name} writes it "
                            f"({spec.shape_key(problem)!r})")
    names = [p.name for p in spec.params]
    if sorted(record.config) != sorted(names):
        raise InvalidRecord(f"config {Config(record.config)} does not name the parameters of {spec.name} "
                            f"({', '.join(names)})")
