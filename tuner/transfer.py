"""Transfer: seed the records of a GPU that has none from another GPU's, marked as such.

`transfer(database, from_device, to_device, kernel=None)` copies every fresh, measured record
of the source device (a normalized name) to the target device class, re-validated against
the target's constraints (`spec.reject_reason` with the target's DeviceInfo: shared memory
per block, registers; `spec.unsupported_reason`: fp8 below compute capability 8.9), and
skips keys the target already has measured. A copy keeps the source's config and timings
(evidence of where it came from, not a measurement of the target) and carries
    extra["transferred_from"] = source name,
    extra["transfer"] = {"from", "capability", "reason", "source_created", "source_device"},
    extra["device"] = the target GPU's SM count and memory (what lookups match renamed cards by),
so that it is never taken for a measured record: the database keeps a measured record over a
transferred one whatever their times, lookups mark its answer "transferred", and
`infertune autotune --confirm-transferred` measures it and replaces it.

Records that were themselves transferred are not copied again (a guess of a guess).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kernels.device import DeviceInfo
from kernels.errors import KernelError
from kernels.registry import REGISTRY
from kernels.spec import Config

from .database import Database, stale_reason
from .devices import device_for
from .keys import device_class, normalize_device_name, problem_from_key, triton_minor
from .location import shown
from .record import TuningRecord


class TransferError(ValueError):
    """A transfer that cannot run: no records of the source device, or a target that is the
    source. One line."""


def is_transferred(record: TuningRecord) -> bool:
    """True when `record` was copied from another device and never measured here."""
    return "transferred_from" in record.extra


def record_key(record: TuningRecord) -> tuple:
    """The database's unique key of a record (tuner/db_schema.py KEY_COLUMNS)."""
    return (record.kernel, record.device_name, record.capability, record.dtype, record.quant, record.problem_key,
            triton_minor(record.triton_version), record.source_hash)


@dataclass
class TransferReport:
    """What one transfer did, record by record."""

    source: str                     # normalized name of the source device
    source_capability: str
    target: str                     # device class of the target
    target_capability: str
    copied: list[TuningRecord] = field(default_factory=list)
    rejected: list[tuple[TuningRecord, str]] = field(default_factory=list)   # (source record, reason)
    measured: list[TuningRecord] = field(default_factory=list)   # source records whose key the target has measured
    already: list[TuningRecord] = field(default_factory=list)    # an earlier transfer at least as fast is stored
    stale: list[tuple[TuningRecord, str]] = field(default_factory=list)
    chained: list[TuningRecord] = field(default_factory=list)    # source records that were transferred themselves

    def reasons(self) -> Counter:
        """How many records each kind of constraint refused ("shared memory", "registers",
        "device" for a problem the target cannot run, else "other")."""
        return Counter(reason_kind(reason) for _, reason in self.rejected)

    def to_dict(self) -> dict[str, Any]:
        def row(r: TuningRecord) -> dict[str, Any]:
            return {"kernel": r.kernel, "problem": r.problem_key, "config": dict(r.config)}

        return {
            "from": {"device_name": self.source, "capability": self.source_capability},
            "to": {"device_name": self.target, "capability": self.target_capability},
            "copied": [row(r) for r in self.copied],
            "rejected": [{**row(r), "reason": why} for r, why in self.rejected],
            "already_measured": [row(r) for r in self.measured],
            "already_transferred": [row(r) for r in self.already],
            "stale": [{**row(r), "reason": why} for r, why in self.stale],
            "not_measured_at_source": [row(r) for r in self.chained],
            "rejected_by": dict(self.reasons()),
            "counts": {"copied": len(self.copied), "rejected": len(self.rejected),
                       "already_measured": len(self.measured), "already_transferred": len(self.already),
                       "stale": len(self.stale), "not_measured_at_source": len(self.chained)},
        }


def reason_kind(reason: str) -> str:
    """The kind of constraint a rejection reason names (see TransferReport.reasons)."""
    text = reason.lower()
    if "shared memory" in text:
        return "shared memory"
    if "register" in text:
        return "registers"
    if "compute capability" in text or "cuda gpu" in text:
        return "device"
    return "other"


def source_name(database: Database, text: str) -> str:
    """The normalized name of the device `text` means among `database`'s records: its own
    normalized name, else the name of the known GPU it means ("h100" ->
    nvidia-h100-80gb-hbm3). Raises TransferError naming the devices present."""
    names = sorted({r.device_name for r in database.records()})
    wanted = normalize_device_name(text)
    if wanted in names:
        return wanted
    known = device_for(text)
    if known is not None:
        for name in (known.name, *known.aliases):
            if name in names:
                return name
    raise TransferError(f"no records of device {text!r} in {shown(database.location)} "
                        f"(devices there: {', '.join(names) or 'none'})")


def transfer(database: Database, from_device: str, to_device: DeviceInfo, kernel: str | None = None,
             *, now: str | None = None) -> TransferReport:
    """Copy every fresh, measured record of device `from_device` (a normalized name as
    records store it) in `database` to the device class of `to_device`, marked transferred
    (see the module docstring), through `Database.put_many`. `kernel` narrows to one kernel.
    Returns what was copied, rejected (and why), or skipped. Raises TransferError when the
    source has no records (of `kernel`) or is the target's device class, and
    tuner.database.DatabaseError when the database cannot be read or written."""
    target = device_class(to_device)
    records = database.records(kernel)
    source = [r for r in records if r.device_name == from_device]
    what = f" of {kernel}" if kernel else ""
    if not source:
        raise TransferError(f"device {from_device!r} has no records{what} in {shown(database.location)}")
    capabilities = sorted({r.capability for r in source})
    if capabilities == ["cpu"] and target.capability != "cpu":
        raise TransferError(f"the records of {from_device} were timed through the Triton interpreter: their configs "
                            "say nothing about a GPU; transfer the records of a GPU")
    if target.name == from_device and target.capability in capabilities:
        raise TransferError(f"{from_device} is the target device itself: nothing to transfer")
    report = TransferReport(from_device, ",".join(capabilities), target.name, target.capability)
    here = {record_key(r): r for r in records if (r.device_name, r.capability) == (target.name, target.capability)}
    stamp = now or datetime.now(timezone.utc).isoformat(timespec="seconds")
    specs = {s.name: s for s in REGISTRY}
    for r in source:
        reason = stale_reason(r)
        if reason:
            report.stale.append((r, reason))
            continue
        if is_transferred(r):
            report.chained.append(r)
            continue
        spec = specs[r.kernel]
        try:
            problem = problem_from_key(spec, r.problem_key)
        except KernelError as exc:  # validate_record lets no such fresh record in; kept as a reason all the same
            report.rejected.append((r, str(exc)))
            continue
        copy = _copy(r, to_device, stamp)
        existing = here.get(record_key(copy))
        if existing is not None and not is_transferred(existing):
            report.measured.append(r)  # whether or not the target could run the config
            continue
        reason = spec.unsupported_reason(problem, to_device) or spec.reject_reason(Config(r.config), problem, to_device)
        if reason:
            report.rejected.append((r, reason))
        elif existing is not None and existing.median_ms <= copy.median_ms:
            report.already.append(r)  # the database keeps the faster of two transferred records
        else:
            report.copied.append(copy)
    if report.copied:
        database.put_many(report.copied, what="transferred record")
    return report


def _copy(r: TuningRecord, to_device: DeviceInfo, created: str) -> TuningRecord:
    target = device_class(to_device)
    source_device = r.extra.get("device")
    evidence = {
        "from": r.device_name, "capability": r.capability,
        "reason": f"config tuned on {r.device_name} passes the constraints of {to_device.label}; "
                  "its times are the source's, not measured here",
        "source_created": r.created,
    }
    if isinstance(source_device, dict):
        evidence["source_device"] = source_device
    extra: dict[str, Any] = {"transferred_from": r.device_name, "transfer": evidence}
    if to_device.kind == "cuda" and to_device.sm_count > 0 and to_device.total_memory > 0:
        # As tuner.result.to_record writes it for a GPU record (a CPU's memory may read 0).
        extra["device"] = {"sm_count": to_device.sm_count, "total_memory": to_device.total_memory}
    return dataclasses.replace(r, device_name=target.name, capability=target.capability, created=created, extra=extra)
