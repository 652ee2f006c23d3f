"""Nsight Compute driver: profile the kernels launched inside infertune's NVTX ranges with
`ncu`, export a .ncu-rep, read it back with `ncu --import <rep> --page raw --csv`, and parse
one `KernelLaunch` per profiled launch.

Never raises for a missing or failing tool: `run_ncu` answers an `NcuResult` whose
`status` is "ok", "absent" (ncu not on PATH), "refused" (ERR_NVGPUCTRPERM: the driver
restricts GPU performance counters to admin users; any other "permission" error of a
failed run too) or "failed" (a nonzero exit, a timeout, no report), with a one-line
`reason`. ncu returns the workload's exit code, so ERR_NVGPUCTRPERM is looked for in the
output whatever the code.

NVTX filter (`--nvtx --nvtx-include`, Nsight Compute CLI "NVTX Filtering"): a config is
`[domain@]range`; a trailing `/` makes it a push/pop range (ours are push/pop: the `nvtx`
package's `push_range`), `regex:` makes both parts regular expressions, and the
quantifiers `@ , [ ] / * +` inside a name are escaped with `\\`. So:

- no names: `regex:infertune@.+/` (every push/pop range of our domain);
- a name `matmul M=16`: `infertune@matmul M=16/`;
- a config that starts with `regex:` is passed through as written.

`--page raw --csv` layout: any leading `==PROF==` lines, then a header row (`"ID"`,
`"Process ID"`, `"Process Name"`, `"Host Name"`, `"Kernel Name"`, `"Context"`, `"Stream"`,
`"Block Size"`, `"Grid Size"`, `"Device"`, `"CC"`, then one column per metric name), a
units row (empty for the non-metric columns: `nsecond`, `usecond`, `msecond`, `%`,
`byte`, `Kbyte`, `Mbyte`, `Gbyte`, `register/thread`, ...), then one row per kernel launch.
Numbers may carry thousands separators (`1,234,567`); missing metrics read `n/a`.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .nsys import DOMAIN, classify, last_line, number, run_tool

SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats")
# Not in the three sections above on every version; asked for explicitly.
EXTRA_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum")

M_DURATION = "gpu__time_duration.sum"
M_SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
M_MEM_PCT = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
M_DRAM = "dram__bytes.sum"
M_DRAM_READ = "dram__bytes_read.sum"
M_DRAM_WRITE = "dram__bytes_write.sum"
M_OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
M_REGISTERS = "launch__registers_per_thread"
M_GRID = "launch__grid_size"
M_BLOCK = "launch__block_size"

_TIME_NS = {
    "nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9,
}
_BYTES = {
    "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
    "kibyte": 1024.0, "mibyte": 1024.0**2, "gibyte": 1024.0**3, "tibyte": 1024.0**4,
}
_QUANTIFIERS = re.compile(r"([@,\[\]/*+\\])")


# --------------------------------------------------------------------------- commands


def escape_nvtx_name(name: str) -> str:
    """Prefix ncu's NVTX quantifiers (and the backslash) inside a plain name with a backslash."""
    return _QUANTIFIERS.sub(lambda m: "\\" + m.group(1), name)


def nvtx_filters(nvtx_include: Sequence[str] | None = None, domain: str = DOMAIN) -> list[str]:
    """`--nvtx-include` configs for push/pop ranges of `domain` (module doc)."""
    if not nvtx_include:
        return [f"regex:{re.escape(domain)}@.+/"]
    out = []
    for item in nvtx_include:
        if item.startswith("regex:"):
            out.append(item)
        else:
            out.append(f"{escape_nvtx_name(domain)}@{escape_nvtx_name(item)}/")
    return out


LAUNCH_COUNT = 64  # ncu replays every profiled launch once per section pass: bound the run


def ncu_command(workload: Sequence[str], out_base: Path | str, nvtx_include: Sequence[str] | None = None,
                launch_count: int | None = LAUNCH_COUNT) -> list[str]:
    """`ncu` of `workload`, launches inside our NVTX ranges only (at most `launch_count`),
    clocks left as they are, the SpeedOfLight / Occupancy / LaunchStats sections and DRAM
    bytes; writes `<out_base>.ncu-rep` (overwriting)."""
    argv = ["ncu", "--clock-control", "none", "--nvtx"]
    if launch_count:
        argv += ["--launch-count", str(launch_count)]
    for config in nvtx_filters(nvtx_include):
        argv += ["--nvtx-include", config]
    for section in SECTIONS:
        argv += ["--section", section]
    argv += ["--metrics", ",".join(EXTRA_METRICS)]
    argv += ["--export", str(out_base), "--force-overwrite", *[str(a) for a in workload]]
    return argv


def import_command(rep: Path | str) -> list[str]:
    """Read a report back: one CSV row per launch, every metric raw (`--page raw`)."""
    return ["ncu", "--import", str(rep), "--page", "raw", "--csv"]


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class KernelLaunch:
    """One profiled kernel launch; times in ns, bytes in bytes, None where not measured."""

    id: int | None
    kernel: str
    duration_ns: float | None
    sm_throughput_pct: float | None
    memory_throughput_pct: float | None
    dram_bytes: float | None
    achieved_occupancy_pct: float | None
    registers_per_thread: int | None
    grid: tuple[int, ...] | None  # (x, y, z) where the report has it, else (total,)
    block: tuple[int, ...] | None
    device: str | None = None
    cc: str | None = None


def scale_unit(value: float | None, unit: str | None) -> float | None:
    """A value in `unit` to ns (time units) or bytes (byte units); other units unchanged."""
    if value is None:
        return None
    key = (unit or "").strip()
    if key in _TIME_NS:
        return value * _TIME_NS[key]
    if key.lower() in _BYTES:
        return value * _BYTES[key.lower()]
    return value


def _dims(text: str | None) -> tuple[int, ...] | None:
    """'(256, 1, 1)' -> (256, 1, 1); '1,024' -> (1024,)."""
    if not text or text.strip().lower() in ("", "n/a"):
        return None
    text = text.strip()
    if text.startswith("("):
        parts = [p for p in re.split(r"[(),\s]+", text) if p]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            return None
    value = number(text)
    return None if value is None else (int(value),)


def parse_raw_csv(text: str) -> list[KernelLaunch]:
    """`ncu --import ... --page raw --csv` output -> one KernelLaunch per row."""
    rows = list(csv.reader(io.StringIO(text)))
    start = next((i for i, r in enumerate(rows) if r and r[0].strip() == "ID" and "Kernel Name" in r), None)
    if start is None:
        return []
    header = [c.strip() for c in rows[start]]
    col = {name: j for j, name in enumerate(header)}
    body = rows[start + 1 :]
    units: list[str] = [""] * len(header)
    if body and body[0] and body[0][0].strip() == "":  # the units row: no launch ID
        units = [c.strip() for c in body[0]] + [""] * max(0, len(header) - len(body[0]))
        body = body[1:]

    def cell(row: list[str], name: str) -> str | None:
        j = col.get(name)
        return row[j] if j is not None and j < len(row) else None

    def metric(row: list[str], name: str) -> float | None:
        j = col.get(name)
        if j is None or j >= len(row):
            return None
        return scale_unit(number(row[j]), units[j] if j < len(units) else "")

    out = []
    for row in body:
        if not row or not any(c.strip() for c in row) or not (cell(row, "ID") or "").strip():
            continue
        dram = metric(row, M_DRAM)
        if dram is None:
            read, write = metric(row, M_DRAM_READ), metric(row, M_DRAM_WRITE)
            dram = None if read is None and write is None else (read or 0.0) + (write or 0.0)
        regs = metric(row, M_REGISTERS)
        launch_id = number(cell(row, "ID"))
        out.append(
            KernelLaunch(
                id=None if launch_id is None else int(launch_id),
                kernel=(cell(row, "Kernel Name") or cell(row, "Function Name") or "").strip(),
                duration_ns=metric(row, M_DURATION),
                sm_throughput_pct=metric(row, M_SM_PCT),
                memory_throughput_pct=metric(row, M_MEM_PCT),
                dram_bytes=dram,
                achieved_occupancy_pct=metric(row, M_OCCUPANCY),
                registers_per_thread=None if regs is None else int(regs),
                grid=_dims(cell(row, "Grid Size")) or _dims(cell(row, M_GRID)),
                block=_dims(cell(row, "Block Size")) or _dims(cell(row, M_BLOCK)),
                device=(cell(row, "Device") or "").strip() or None,
                cc=(cell(row, "CC") or "").strip() or None,
            )
        )
    return out


# --------------------------------------------------------------------------- the driver


@dataclass
class NcuResult:
    status: str  # "ok" / "absent" / "refused" / "failed"
    reason: str
    launches: list[KernelLaunch] = field(default_factory=list)
    report: Path | None = None  # the .ncu-rep
    raw_csv: Path | None = None  # the --page raw --csv text, as read
    log: Path | None = None  # ncu's stdout and stderr while profiling
    commands: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def files(self) -> list[Path]:
        """Every file this run left in out_dir: the log, the report, the raw CSV."""
        return [p for p in (self.log, self.report, self.raw_csv) if p is not None and p.is_file()]

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("report", "raw_csv", "log"):
            data[key] = None if data[key] is None else str(data[key])
        data["files"] = [str(p) for p in self.files()]
        return data


def run_ncu(
    workload: Sequence[str],
    out_dir: Path | str,
    nvtx_include: Sequence[str] | None = None,
    timeout_s: float | None = 600.0,
    name: str = "ncu",
) -> NcuResult:
    """Profile `workload` (an argv list) under ncu into `out_dir` and parse the launches.
    Never raises for tool trouble; see the module doc for the statuses."""
    ncu = shutil.which("ncu")
    if ncu is None:
        return NcuResult("absent", "ncu not found on PATH")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return NcuResult("failed", f"cannot create {out_dir}: {exc}")
    base = out_dir / name
    argv = ncu_command(workload, base, nvtx_include)
    argv[0] = ncu
    result = NcuResult("ok", "", commands=[argv])
    Path(f"{base}.ncu-rep").unlink(missing_ok=True)  # never read a previous run's report back
    run = run_tool(argv, timeout_s)
    result.log = out_dir / f"{name}.profile.log"
    result.log.write_text(run.output, encoding="utf-8")
    bad = classify(run, "ncu", timeout_s)
    if bad is not None:
        result.status, result.reason = bad
        return result
    rep = Path(f"{base}.ncu-rep")
    if not rep.is_file():
        if "No kernels were profiled" in run.output:
            result.reason = "no kernels were profiled (nothing launched inside the NVTX filter)"
            return result
        result.status, result.reason = "failed", f"ncu wrote no {rep.name}: {last_line(run.stdout, run.stderr)}"
        return result
    result.report = rep
    argv = import_command(rep)
    argv[0] = ncu
    result.commands.append(argv)
    imported = run_tool(argv, timeout_s)
    bad = classify(imported, "ncu --import", timeout_s)
    if bad is not None:
        result.status, result.reason = bad
        return result
    result.raw_csv = out_dir / f"{name}_raw.csv"
    result.raw_csv.write_text(imported.stdout, encoding="utf-8")
    result.launches = parse_raw_csv(imported.stdout)
    kernels = len({launch.kernel for launch in result.launches})
    result.reason = f"{len(result.launches)} launch(es) of {kernels} kernel(s) profiled"
    return result
