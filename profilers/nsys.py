"""Nsight Systems driver: run a workload under `nsys profile`, read the summaries back with
`nsys stats --format csv`, and attribute GPU kernel time to the NVTX ranges of our domain.

Never raises for a missing or failing tool: `run_nsys` answers an `NsysResult` whose
`status` is "ok", "absent" (nsys not on PATH), "refused" (a permission error such as
ERR_NVGPUCTRPERM) or "failed" (a nonzero exit, a timeout, no report), with a one-line
`reason`. Every file it makes (the .nsys-rep, the SQLite export nsys makes beside it, one
CSV per summary report) stays in `out_dir`.

Report names changed across nsys versions (renamed around 2023.1); each table is asked for
under its current name first and under the old one(s) after:

| table | names tried, in order |
|---|---|
| GPU kernels | `cuda_gpu_kern_sum`, `gpukernsum` |
| NVTX ranges (CPU time) | `nvtx_sum`, `nvtx_pushpop_sum`, `nvtxsum`, `nvtxppsum` |
| GPU kernels per NVTX range | `nvtx_kern_sum`, `nvtxkernsum` |
| NVTX ranges projected on the GPU | `nvtx_gpu_proj_sum` (recent versions only; no old name) |

Column headers also changed (`Time(%)` / `Time (%)`, `Average` / `Average (ns)` /
`Avg (ns)`, ...); columns are found by name, never by position, and a `(us)` / `(ms)` /
`(s)` unit in a header is converted to ns.

What the summary reports can and cannot attribute (`launch_overhead`):

- `cuda_gpu_kern_sum` is global: per kernel name, over the whole run. On its own it says
  nothing about which NVTX range launched a kernel.
- `nvtx_sum` gives each range's CPU (wall) time: from push to pop on the host thread.
- `nvtx_kern_sum` joins each kernel to every NVTX range whose host-side span contains the
  CUDA API call that launched it (same process and thread). Its per-range sum of kernel
  durations is the GPU busy time a range launched, and `range CPU time - that sum` is the
  overhead estimate (launch cost, Python, synchronisation, GPU idle). Caveats: a kernel
  counts for every enclosing range (a parent includes its children); kernels on
  concurrent streams are summed, not merged; a kernel may finish after its range ended, so
  the difference can be negative (the GPU, not the host, was the bottleneck).
- `nvtx_gpu_proj_sum` projects each range onto the GPU (first GPU op start to last GPU op
  end, launches from the same thread). Projected time includes the GPU gaps between
  kernels and memcopies/memsets, so it is an upper bound on kernel time; it is used only
  when `nvtx_kern_sum` is not available, and the overhead then says "projection".
- Kernels launched from another thread than the one that pushed the range (a worker
  thread, a CUDA graph replay counted as one launch) are not attributed by either report.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The NVTX domain infertune's ranges are pushed in (profilers/nvtx.py, kernels/_nvtx.py).
DOMAIN = "infertune"

KERNEL_REPORTS = ("cuda_gpu_kern_sum", "gpukernsum")
NVTX_REPORTS = ("nvtx_sum", "nvtx_pushpop_sum", "nvtxsum", "nvtxppsum")
NVTX_KERNEL_REPORTS = ("nvtx_kern_sum", "nvtxkernsum")
NVTX_PROJ_REPORTS = ("nvtx_gpu_proj_sum",)

STATUSES = ("ok", "absent", "refused", "failed")
_PERMISSION_RE = re.compile(r"ERR_NVGPUCTRPERM|permission", re.IGNORECASE)


# --------------------------------------------------------------------------- running tools


@dataclass(frozen=True)
class ToolRun:
    """One finished (or timed-out) subprocess."""

    argv: list[str]
    returncode: int | None  # None: it timed out and was killed, or could not start
    stdout: str
    stderr: str
    timed_out: bool = False
    error: str | None = None  # OSError text when it could not start

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


def run_tool(argv: Sequence[str], timeout_s: float | None, cwd: Path | None = None) -> ToolRun:
    """Run `argv` (a list, never through a shell) in its own process group; on timeout the
    whole group (the tool and the workload it launched) is killed."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return ToolRun(argv, None, "", "", error=f"{argv[0]} could not run: {exc}")
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        out, err = proc.communicate()
        return ToolRun(argv, None, out or "", err or "", timed_out=True)
    return ToolRun(argv, proc.returncode, out or "", err or "")


def last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one ("no output" otherwise)."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def classify(run: ToolRun, name: str, timeout_s: float | None) -> tuple[str, str] | None:
    """(status, reason) when `run` did not succeed; None when it did.

    ERR_NVGPUCTRPERM is "refused" whatever the exit code (ncu returns the workload's
    code); any other "permission" text is "refused" only when the tool failed."""
    if run.error is not None:
        return "failed", run.error
    if run.timed_out:
        return "failed", f"{name} did not finish within {timeout_s:.0f} s (killed)"
    marker = next((line.strip() for line in run.output.splitlines() if "ERR_NVGPUCTRPERM" in line), None)
    if marker is not None:
        return "refused", marker
    if run.returncode != 0:
        text = run.output
        if _PERMISSION_RE.search(text):
            line = next(line.strip() for line in reversed(text.splitlines()) if _PERMISSION_RE.search(line))
            return "refused", line
        errors = [line.strip() for line in text.splitlines() if line.strip().startswith("==ERROR==")]
        detail = errors[-1] if errors else last_line(run.stderr, run.stdout)
        return "failed", f"{name} exited {run.returncode}: {detail}"
    return None


# --------------------------------------------------------------------------- commands


def nsys_command(workload: Sequence[str], out_base: Path | str) -> list[str]:
    """`nsys profile` of `workload`: CUDA API and kernels plus NVTX, no CPU sampling or
    context switches; writes `<out_base>.nsys-rep` (overwriting)."""
    return [
        "nsys",
        "profile",
        "--trace=cuda,nvtx",
        "--sample=none",
        "--cpuctxsw=none",
        "--force-overwrite=true",
        "-o",
        str(out_base),
        *[str(a) for a in workload],
    ]


def stats_command(rep: Path | str, report: str, out_prefix: Path | str) -> list[str]:
    """`nsys stats` of one report as CSV; nsys writes it to `<out_prefix>_<report>.csv`
    (see `stats_csv_path`)."""
    return ["nsys", "stats", "--report", report, "--format", "csv", "--output", str(out_prefix), str(rep)]


def stats_csv_path(out_prefix: Path | str, report: str) -> Path:
    return Path(f"{out_prefix}_{report}.csv")


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class KernelStat:
    """One row of cuda_gpu_kern_sum / gpukernsum: GPU time of one kernel name."""

    name: str
    instances: int
    total_ns: float
    avg_ns: float | None
    med_ns: float | None  # absent from the oldest gpukernsum
    min_ns: float | None
    max_ns: float | None
    time_pct: float | None


@dataclass(frozen=True)
class NvtxRangeStat:
    """One row of nvtx_sum (or an older name): CPU time of one NVTX range name."""

    domain: str  # "" for the default domain
    name: str  # the message, without the domain
    style: str | None  # "PushPop" / "StartEnd" where the report says
    instances: int
    total_ns: float
    avg_ns: float | None
    med_ns: float | None
    min_ns: float | None
    max_ns: float | None

    @property
    def qualified(self) -> str:
        return f"{self.domain}:{self.name}"


@dataclass(frozen=True)
class RangeKernelStat:
    """One row of nvtx_kern_sum: the kernels of one name launched inside one range."""

    domain: str
    range: str
    kernel: str
    range_instances: int
    kernel_instances: int
    total_ns: float


@dataclass(frozen=True)
class RangeProjection:
    """One row of nvtx_gpu_proj_sum: a range projected onto the GPU."""

    domain: str
    range: str
    proj_total_ns: float
    range_total_ns: float | None
    instances: int
    gpu_ops: int | None


@dataclass(frozen=True)
class LaunchOverhead:
    """Per NVTX range: CPU range time minus the GPU time attributed to it (see the module
    doc). `gpu_ns`/`overhead_ns` are None where nothing could be attributed."""

    domain: str
    range: str
    instances: int
    range_ns: float
    gpu_ns: float | None
    overhead_ns: float | None
    overhead_per_instance_ns: float | None
    source: str | None  # "nvtx_kern_sum", "nvtx_gpu_proj_sum" or None
    note: str


def _norm_header(text: str) -> tuple[str, float]:
    """('avg', 1.0) from 'Avg (ns)'; ('total time', 1e3) from 'Total Time (us)'."""
    text = text.strip().lower()
    scale = 1.0
    match = re.search(r"\((ns|us|ms|s)\)\s*$", text)
    if match:
        scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[match.group(1)]
        text = text[: match.start()]
    elif text.endswith("(%)"):
        text = text[: -len("(%)")].strip() + " %"
    return re.sub(r"\s+", " ", text).strip(), scale


_ALIASES = {
    "time_pct": ("time %",),
    "total": ("total time",),
    "instances": ("instances", "count", "num calls"),
    "avg": ("avg", "average"),
    "med": ("med", "median"),
    "min": ("min", "minimum"),
    "max": ("max", "maximum"),
    "name": ("name", "kernel name"),
    "range": ("range", "nvtx range", "name"),
    "domain": ("domain",),
    "style": ("style",),
    "kernel": ("kernel name",),
    "nvtx_inst": ("nvtx inst",),
    "kern_inst": ("kern inst",),
    "proj_total": ("total proj time",),
    "range_total": ("total range time",),
    "range_instances": ("range instances",),
    "gpu_ops": ("total gpu ops",),
}


def number(text: str | None) -> float | None:
    """'1,234.5' -> 1234.5; '', '-', 'n/a' -> None."""
    if text is None:
        return None
    text = text.strip().replace(",", "")
    if text in ("", "-", "n/a", "N/A", "nan"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


class _Table:
    """A CSV summary: the header row found by its key column (leading notices skipped)."""

    def __init__(self, text: str, key: str) -> None:
        self.columns: dict[str, tuple[int, float]] = {}
        self.rows: list[list[str]] = []
        rows = list(csv.reader(io.StringIO(text)))
        for i, row in enumerate(rows):
            names = [_norm_header(cell) for cell in row]
            if len(row) >= 3 and any(n in _ALIASES[key] for n, _ in names):
                for field_name, aliases in _ALIASES.items():
                    for j, (n, scale) in enumerate(names):
                        if n in aliases:
                            self.columns[field_name] = (j, scale)
                            break
                self.rows = [r for r in rows[i + 1 :] if any(c.strip() for c in r)]
                return

    def has(self, field_name: str) -> bool:
        return field_name in self.columns

    def text(self, row: list[str], field_name: str) -> str | None:
        if field_name not in self.columns:
            return None
        j = self.columns[field_name][0]
        return row[j].strip() if j < len(row) else None

    def num(self, row: list[str], field_name: str) -> float | None:
        if field_name not in self.columns:
            return None
        value = number(self.text(row, field_name))
        return None if value is None else value * self.columns[field_name][1]


def split_range_name(name: str, domains: Sequence[str] = (DOMAIN,)) -> tuple[str, str]:
    """(domain, message) of a range name as the reports print it.

    `infertune:matmul M=16` -> ("infertune", "matmul M=16"); `:warmup` (the default domain,
    as nvtx_kern_sum / nvtx_gpu_proj_sum print it) and `warmup` (as some nvtx_sum versions
    print it) -> ("", "warmup"). A prefix is taken for a domain only if it is a known domain
    (`domains`), since messages may contain ':' themselves."""
    if name.startswith(":"):
        return "", name[1:]
    for domain in domains:
        if name.startswith(domain + ":"):
            return domain, name[len(domain) + 1 :]
    return "", name


def _domain_and_name(table: _Table, row: list[str], key: str, domains: Sequence[str]) -> tuple[str, str]:
    raw = table.text(row, key) or ""
    domain_col = table.text(row, "domain")
    if domain_col is not None:  # a version with a separate Domain column
        return domain_col, raw.removeprefix(":")
    return split_range_name(raw, domains)


def parse_kernel_sum(text: str) -> list[KernelStat]:
    """cuda_gpu_kern_sum / gpukernsum CSV -> one KernelStat per kernel name."""
    table = _Table(text, "name")
    out = []
    for row in table.rows:
        name = table.text(row, "name")
        total = table.num(row, "total")
        if not name or total is None:
            continue
        out.append(
            KernelStat(
                name=name,
                instances=int(table.num(row, "instances") or 0),
                total_ns=total,
                avg_ns=table.num(row, "avg"),
                med_ns=table.num(row, "med"),
                min_ns=table.num(row, "min"),
                max_ns=table.num(row, "max"),
                time_pct=number(table.text(row, "time_pct")),
            )
        )
    return out


def parse_nvtx_sum(text: str, domains: Sequence[str] = (DOMAIN,)) -> list[NvtxRangeStat]:
    """nvtx_sum / nvtx_pushpop_sum / nvtxsum CSV -> one NvtxRangeStat per range name."""
    table = _Table(text, "range")
    out = []
    for row in table.rows:
        domain, name = _domain_and_name(table, row, "range", domains)
        total = table.num(row, "total")
        if not name or total is None:
            continue
        out.append(
            NvtxRangeStat(
                domain=domain,
                name=name,
                style=table.text(row, "style") or None,
                instances=int(table.num(row, "instances") or 0),
                total_ns=total,
                avg_ns=table.num(row, "avg"),
                med_ns=table.num(row, "med"),
                min_ns=table.num(row, "min"),
                max_ns=table.num(row, "max"),
            )
        )
    return out


def parse_nvtx_kern_sum(text: str, domains: Sequence[str] = (DOMAIN,)) -> list[RangeKernelStat]:
    """nvtx_kern_sum CSV -> one row per (range, kernel, pid, tid); kernels launched outside
    any range (empty range name) are dropped."""
    table = _Table(text, "range")
    if not table.has("kernel"):
        return []
    out = []
    for row in table.rows:
        if not (table.text(row, "range") or ""):
            continue
        domain, name = _domain_and_name(table, row, "range", domains)
        total = table.num(row, "total")
        if total is None:
            continue
        out.append(
            RangeKernelStat(
                domain=domain,
                range=name,
                kernel=table.text(row, "kernel") or "",
                range_instances=int(table.num(row, "nvtx_inst") or 0),
                kernel_instances=int(table.num(row, "kern_inst") or 0),
                total_ns=total,
            )
        )
    return out


def parse_nvtx_gpu_proj_sum(text: str, domains: Sequence[str] = (DOMAIN,)) -> list[RangeProjection]:
    """nvtx_gpu_proj_sum CSV -> one RangeProjection per range name."""
    table = _Table(text, "range")
    if not table.has("proj_total"):
        return []
    out = []
    for row in table.rows:
        domain, name = _domain_and_name(table, row, "range", domains)
        proj = table.num(row, "proj_total")
        if not name or proj is None:
            continue
        gpu_ops = table.num(row, "gpu_ops")
        out.append(
            RangeProjection(
                domain=domain,
                range=name,
                proj_total_ns=proj,
                range_total_ns=table.num(row, "range_total"),
                instances=int(table.num(row, "range_instances") or 0),
                gpu_ops=None if gpu_ops is None else int(gpu_ops),
            )
        )
    return out


def launch_overhead(
    ranges: Sequence[NvtxRangeStat],
    range_kernels: Sequence[RangeKernelStat] | None = None,
    projections: Sequence[RangeProjection] | None = None,
) -> list[LaunchOverhead]:
    """Per range: CPU time minus attributed GPU kernel time (module doc: what is attributable).

    nvtx_kern_sum rows are summed per range over kernels and threads; without it,
    nvtx_gpu_proj_sum's projected time stands in; without either, nothing is attributed."""
    kern: dict[tuple[str, str], float] = {}
    for row in range_kernels or ():
        key = (row.domain, row.range)
        kern[key] = kern.get(key, 0.0) + row.total_ns
    proj = {(p.domain, p.range): p for p in projections or ()}
    out = []
    for r in ranges:
        key = (r.domain, r.name)
        if range_kernels is not None:
            gpu = kern.get(key, 0.0)
            source, note = "nvtx_kern_sum", "CPU range time minus the kernels launched inside it"
            if key not in kern:
                note = "no kernel was launched inside this range"
        elif projections is not None and key in proj:
            gpu = proj[key].proj_total_ns
            source = "nvtx_gpu_proj_sum"
            note = "CPU range time minus its GPU projection (projection includes GPU gaps: overhead is a lower bound)"
        else:
            out.append(
                LaunchOverhead(
                    r.domain, r.name, r.instances, r.total_ns, None, None, None, None,
                    "not attributable: no nvtx_kern_sum / nvtx_gpu_proj_sum for this range",
                )
            )
            continue
        overhead = r.total_ns - gpu
        per = overhead / r.instances if r.instances else None
        if overhead < 0:
            note += "; negative: GPU work outlived the host-side range (GPU-bound)"
        out.append(LaunchOverhead(r.domain, r.name, r.instances, r.total_ns, gpu, overhead, per, source, note))
    return out


# --------------------------------------------------------------------------- the driver


@dataclass
class NsysResult:
    status: str  # "ok" / "absent" / "refused" / "failed"
    reason: str
    kernels: list[KernelStat] = field(default_factory=list)
    ranges: list[NvtxRangeStat] = field(default_factory=list)
    range_kernels: list[RangeKernelStat] | None = None  # None: nvtx_kern_sum not available
    projections: list[RangeProjection] | None = None  # None: nvtx_gpu_proj_sum not available
    overhead: list[LaunchOverhead] = field(default_factory=list)
    report: Path | None = None  # the .nsys-rep
    log: Path | None = None  # nsys profile's stdout and stderr
    csvs: dict[str, Path] = field(default_factory=dict)  # report name used -> CSV path
    notes: list[str] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def ranges_in(self, domain: str = DOMAIN) -> list[NvtxRangeStat]:
        return [r for r in self.ranges if r.domain == domain]

    def files(self) -> list[Path]:
        """Every file this run left in out_dir: the log, the report, its SQLite export, the CSVs."""
        out = [p for p in (self.log, self.report) if p is not None and p.is_file()]
        if self.report is not None and self.report.with_suffix(".sqlite").is_file():
            out.append(self.report.with_suffix(".sqlite"))
        return out + [p for p in self.csvs.values() if p.is_file()]

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("report", "log"):
            data[key] = None if data[key] is None else str(data[key])
        data["csvs"] = {k: str(v) for k, v in self.csvs.items()}
        data["files"] = [str(p) for p in self.files()]
        return data


def _stats(
    nsys: str, rep: Path, names: Sequence[str], prefix: Path, timeout_s: float | None, result: NsysResult
) -> tuple[str, str] | None:
    """Ask for the first of `names` that this nsys knows; (report name, CSV text) or None."""
    tried = []
    for name in names:
        csv_path = stats_csv_path(prefix, name)
        csv_path.unlink(missing_ok=True)
        argv = stats_command(rep, name, prefix)
        argv[0] = nsys
        result.commands.append(argv)
        run = run_tool(argv, timeout_s)
        if csv_path.is_file():
            result.csvs[name] = csv_path
            return name, csv_path.read_text(encoding="utf-8", errors="replace")
        tried.append(f"{name}: {last_line(run.stderr, run.stdout) if run.error is None else run.error}")
        if run.timed_out:
            break
    result.notes.append("no table from " + "; ".join(tried))
    return None


def run_nsys(
    workload: Sequence[str],
    out_dir: Path | str,
    timeout_s: float | None = 600.0,
    name: str = "nsys",
    domains: Sequence[str] = (DOMAIN,),
) -> NsysResult:
    """Profile `workload` (an argv list) under nsys into `out_dir`, then read the summaries.
    Never raises for tool trouble; see the module doc for the statuses."""
    nsys = shutil.which("nsys")
    if nsys is None:
        return NsysResult("absent", "nsys not found on PATH")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return NsysResult("failed", f"cannot create {out_dir}: {exc}")
    base = out_dir / name
    argv = nsys_command(workload, base)
    argv[0] = nsys
    result = NsysResult("ok", "", commands=[argv])
    # A stale export would be read back: nsys stats reuses an existing <base>.sqlite.
    for stale in (f"{base}.nsys-rep", f"{base}.qdrep", f"{base}.sqlite"):
        Path(stale).unlink(missing_ok=True)
    run = run_tool(argv, timeout_s)
    result.log = out_dir / f"{name}.profile.log"
    result.log.write_text(run.output, encoding="utf-8")
    bad = classify(run, "nsys profile", timeout_s)
    if bad is not None:
        result.status, result.reason = bad
        return result
    rep = Path(f"{base}.nsys-rep")
    if not rep.is_file():
        legacy = Path(f"{base}.qdrep")  # nsys before 2021.4
        if not legacy.is_file():
            result.status, result.reason = "failed", f"nsys profile wrote no {rep.name}: {last_line(run.stderr, run.stdout)}"
            return result
        rep = legacy
    result.report = rep

    got = _stats(nsys, rep, KERNEL_REPORTS, base, timeout_s, result)
    if got is None:
        # a run that launched no kernel is not a failure of the tool
        if any("does not contain" in n for n in result.notes):
            result.notes.append("the run has no CUDA kernel data")
        else:
            result.status, result.reason = "failed", "nsys stats gave no kernel summary (" + result.notes[-1] + ")"
            return result
    else:
        result.kernels = parse_kernel_sum(got[1])
    got = _stats(nsys, rep, NVTX_REPORTS, base, timeout_s, result)
    if got is not None:
        result.ranges = parse_nvtx_sum(got[1], domains)
    got = _stats(nsys, rep, NVTX_KERNEL_REPORTS, base, timeout_s, result)
    if got is not None:
        result.range_kernels = parse_nvtx_kern_sum(got[1], domains)
    got = _stats(nsys, rep, NVTX_PROJ_REPORTS, base, timeout_s, result)
    if got is not None:
        result.projections = parse_nvtx_gpu_proj_sum(got[1], domains)
    result.overhead = launch_overhead(result.ranges, result.range_kernels, result.projections)
    ours = len(result.ranges_in(DOMAIN))
    result.reason = (
        f"{len(result.kernels)} kernel(s), {len(result.ranges)} NVTX range(s) ({ours} in {DOMAIN}), "
        f"overhead from {result.overhead[0].source if result.overhead and result.overhead[0].source else 'nothing'}"
    )
    return result
