"""A traffic bucket map (issue 14, part 1): for one kernel, device and problem family (the
key without its token dim), the M bucket boundaries chosen under a traffic histogram and
the config of each bucket. The database stores one per (kernel, device, family, source hash,
Triton minor); a lookup whose M falls in a bucket gets that bucket's config (source "bucket").

Bucket k holds the Ms in (uppers[k-1], uppers[k]]; an M above the last bound belongs to the
last bucket (as `tuner.traffic.BucketPlan.bucket_of`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .record import (
    MAX_CONFIG_VALUE,
    MAX_DIM,
    MAX_EXTRA_CHARS,
    MIN_CONFIG_VALUE,
    InvalidRecord,
    TuningRecord,
    check_record,
)

# A map with more buckets than this is not a bucket map any more: the fine M buckets of
# tuner.keys number 25 up to 4096; 64 leaves room and keeps a stored row small.
MAX_BUCKETS = 64


class InvalidBucketMap(InvalidRecord):
    """A bucket map that must not be stored or used; the message is one line."""


@dataclass(frozen=True)
class BucketMap:
    """The buckets and one config each for one (kernel, device, family, software)."""

    kernel: str                       # registry name
    device_name: str                  # normalized, e.g. "nvidia-h100-80gb-hbm3"; "cpu"
    capability: str                   # "9.0"; "cpu" on the interpreter
    family: str                       # tuner.keys.problem_family: "N=4096,K=4096|bf16|bias=0"
    source_hash: str                  # the kernel's source hash when the map was tuned
    triton_version: str
    uppers: tuple[int, ...]           # the largest M of each bucket, strictly increasing
    configs: tuple[dict[str, int], ...]  # the config of each bucket
    created: str                      # ISO-8601 UTC
    extra: dict[str, Any] = field(default_factory=dict)  # histogram, expected latencies, ...

    def bucket_of(self, m: int) -> int:
        """The index of the bucket that serves M (above the last bound: the last bucket)."""
        for i, upper in enumerate(self.uppers):
            if m <= upper:
                return i
        return len(self.uppers) - 1

    def config_for(self, m: int) -> dict[str, int]:
        """The config of the bucket that serves M."""
        return self.configs[self.bucket_of(m)]

    def ranges(self) -> list[tuple[int, int]]:
        """(first M, last M) of each bucket: the first starts at 1, the last ends at its upper
        bound (larger Ms use it too)."""
        lows = (1, *(u + 1 for u in self.uppers[:-1]))
        return list(zip(lows, self.uppers))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["uppers"] = list(self.uppers)
        data["configs"] = [dict(c) for c in self.configs]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> BucketMap:
        """The inverse of to_dict, checked (`check`). Raises InvalidBucketMap (one line)."""
        if not isinstance(data, dict):
            raise InvalidBucketMap(f"a bucket map must be an object, got {_short(data)}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names, key=str)
        if unknown:
            raise InvalidBucketMap(f"unknown bucket map field {_short(unknown[0])}")
        missing = sorted(n for n in names - set(data) if n != "extra")
        if missing:
            raise InvalidBucketMap(f"bucket map field {missing[0]!r} is missing")
        uppers, configs = data["uppers"], data["configs"]
        if not isinstance(uppers, (list, tuple)) or not isinstance(configs, (list, tuple)):
            raise InvalidBucketMap("bucket map uppers and configs must be lists")
        made = cls(**{**data, "uppers": tuple(uppers), "configs": tuple(configs),
                      "extra": data.get("extra", {})})
        made.check()
        return made

    def check(self) -> None:
        """Check the map is well formed: the text fields as a record's (one line, normalized
        device name, capability "9.0" or "cpu", ISO-8601 created); 1 to 64 buckets with
        strictly increasing integer upper bounds in 1..2**31-1; one config per bucket, each a
        non-empty object of NAME: integer in 1..2**20; extra a JSON object of at most 65,536
        characters. Raises InvalidBucketMap (one line)."""
        for name in ("kernel", "device_name", "capability", "family", "source_hash", "triton_version", "created"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isprintable() or len(value) > 512:
                raise InvalidBucketMap(f"bucket map {name} must be one printable line, got {_short(value)}")
        try:  # the record check owns the rules for kernel, device, capability, version, created
            check_record(_probe_record(self))
        except InvalidBucketMap:
            raise
        except InvalidRecord as exc:
            raise InvalidBucketMap(f"bucket map: {exc}") from None
        n = len(self.uppers)
        if not 1 <= n <= MAX_BUCKETS:
            raise InvalidBucketMap(f"a bucket map needs 1 to {MAX_BUCKETS} buckets, got {n}")
        for upper in self.uppers:
            if not _is_int(upper) or not 1 <= upper <= MAX_DIM:
                raise InvalidBucketMap(f"bucket upper bound must be an integer from 1 to {MAX_DIM}, "
                                       f"got {_short(upper)}")
        if any(b <= a for a, b in itertools.pairwise(self.uppers)):
            raise InvalidBucketMap(f"bucket upper bounds must increase strictly, got {_short(list(self.uppers))}")
        if len(self.configs) != n:
            raise InvalidBucketMap(f"a bucket map needs one config per bucket: {n} buckets, "
                                   f"{len(self.configs)} configs")
        for config in self.configs:
            if not isinstance(config, dict) or not config:
                raise InvalidBucketMap(f"a bucket config must be a non-empty object, got {_short(config)}")
            for key, value in config.items():
                if not isinstance(key, str) or not key.isidentifier() or not key.isascii():
                    raise InvalidBucketMap(f"bucket config has a malformed name {_short(key)}")
                if not _is_int(value) or not MIN_CONFIG_VALUE <= value <= MAX_CONFIG_VALUE:
                    raise InvalidBucketMap(f"bucket config value {key}={_short(value)} must be an integer "
                                           f"from {MIN_CONFIG_VALUE} to {MAX_CONFIG_VALUE}")
        if not isinstance(self.extra, dict):
            raise InvalidBucketMap(f"bucket map extra must be an object, got {_short(self.extra)}")
        try:
            text = json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidBucketMap(f"bucket map extra is not plain JSON: {exc}") from None
        if len(text) > MAX_EXTRA_CHARS:
            raise InvalidBucketMap(f"bucket map extra is {len(text)} characters of JSON, more than {MAX_EXTRA_CHARS}")


def _probe_record(m: BucketMap) -> TuningRecord:
    """A minimal record carrying the map's text fields, so that check_record applies the one
    set of rules for names, devices, capabilities, versions and times."""
    return TuningRecord(
        kernel=m.kernel, source_hash=m.source_hash, device_name=m.device_name, capability=m.capability,
        triton_version=m.triton_version, torch_version="0", dtype="x", quant="none", problem_key="M=1|x",
        bucket="M=1|x", shape={"M": 1}, config={"x": 1}, median_ms=0.0, p10_ms=0.0, p90_ms=0.0,
        default_ms=None, baseline_ms=None, trials=0, interpreter=False, created=m.created, extra={})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
