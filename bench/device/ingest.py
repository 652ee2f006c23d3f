"""Turn what came back from the GPU machine into bench/results/<date>-<device>/.

    python -m bench.device ingest DIR [DIR ...] [--name 2026-11-28-nvidia-h200] [--results bench/results]

Each DIR is one call's output folder (status.json and kit.tar.gz from `bench.device run`, or loose
files from a hand-made rerun). Each becomes run-<n>/ (the work folder's text files: logs, results,
tuned records; no databases, no model files), with its own results.md / results.json from
bench.device.summary. The date folder gets results.md (every run's goals), tuned-configs.json (the
latest run's tuned records, as `infertune db import` takes them), and bench/results/README.md's
table of the latest GPU figures is refreshed. Grid recordings measured on a GPU (a run's
grids/*.json) are also published to bench/data (--data), where `bench.tuning --grid-resume`
and the replays read them; one there with more configs of the same grid is kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import kernels
from bench.common import slug
from tuner.replay import ReplayError, load

from .summary import goals_table, summarize

# Large or binary files the results folder does not keep: databases (the tuned records are
# exported as JSON), the synthetic model files, ncu's raw CSV (its launches are in run.json).
SKIP_SUFFIXES = (".db", ".db-wal", ".db-shm", ".safetensors", ".ncu-rep", ".qdrep", ".nsys-rep")
SKIP_PARTS = ("models",)
SKIP_NAMES = ("ncu_raw.csv",)
MAX_FILE_BYTES = 2 << 20
README_BEGIN, README_END = "<!-- latest-gpu-figures:begin -->", "<!-- latest-gpu-figures:end -->"


def _safe_members(tar: tarfile.TarFile, dest: Path):
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not member.isfile() or not str(target).startswith(str(root) + "/"):
            continue  # links, devices and paths out of the folder are never extracted
        yield member


def unpack(src: Path, dest: Path) -> None:
    """src's kit.tar.gz (and its loose files) into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = src / "kit.tar.gz"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            tar.extractall(dest, members=list(_safe_members(tar, dest)))
    for path in src.rglob("*"):
        if path.is_file() and path.name != "kit.tar.gz":
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def keep(path: Path, rel: Path) -> bool:
    return (path.is_file() and path.suffix not in SKIP_SUFFIXES and path.name not in SKIP_NAMES
            and not any(part in SKIP_PARTS for part in rel.parts) and path.stat().st_size <= MAX_FILE_BYTES)


def ingest_one(src: Path, dest: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        unpack(src, work)
        summary = summarize(work)
        if dest.exists():
            shutil.rmtree(dest)
        for path in sorted(work.rglob("*")):
            rel = path.relative_to(work)
            if keep(path, rel):
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest / rel)
    (dest / "results.md").write_text(summary["markdown"])
    (dest / "results.json").write_text(json.dumps(summary["data"], indent=1, default=str) + "\n")
    return summary["data"]


def publish_recordings(run: Path, data_dir: Path) -> list[str]:
    """Copy the run's GPU grid recordings (grids/*.json) to data_dir; lines saying what was done.
    A recording made on the CPU (the smoke kit) says nothing of GPU speed and is never
    published; one already in data_dir with more configs of the same grid is kept."""
    said = []
    for path in sorted(run.glob("grids/*.json")):
        try:
            _, new = load(path, kernels.get)
        except (ReplayError, KeyError, ValueError) as exc:
            said.append(f"not published: {path.name}: {exc}")
            continue
        if new.device.kind != "cuda" or new.device.interpreter:
            continue
        target = data_dir / path.name
        if target.is_file():
            try:
                _, old = load(target, kernels.get)
            except (ReplayError, KeyError, ValueError):
                old = None
            if old is not None and len(old.outcomes) > len(new.outcomes):
                said.append(f"kept {target}: {len(old.outcomes)} configs, the run's has {len(new.outcomes)}")
                continue
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        said.append(f"published {target}: {len(new.outcomes)} configs")
    return said


def tuned_export(folder: Path) -> dict | None:
    """The run's `infertune db export` document (records of every device file in one), or None."""
    document = None
    for path in sorted((folder / "tuned").glob("*.json")):
        data = json.loads(path.read_text())
        if document is None:
            document = data
        else:
            document["records"] = document.get("records", []) + data.get("records", [])
    return document if document and document.get("records") else None


def latest_goals(runs: list[tuple[str, dict]]) -> list[dict]:
    """Per figure, the latest run that measured it (value not None), named in `source`."""
    chosen: dict[str, dict] = {}
    for name, data in runs:
        for g in data["goals"]:
            if g["value"] is not None or g["figure"] not in chosen:
                chosen[g["figure"]] = {**g, "source": f"{name} {g['source']}".strip()}
    return list(chosen.values())


def refresh_readme(readme: Path, folder: Path, goals: list[dict], device: str) -> None:
    text = readme.read_text() if readme.is_file() else "# Benchmark results\n"
    block = "\n".join([README_BEGIN, f"## Latest GPU figures: {device}, [{folder.name}]({folder.name}/results.md)", "",
                       *goals_table(goals), README_END])
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        text = head + block + rest.split(README_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device ingest", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="output folders of device calls, in the order they ran")
    parser.add_argument("--name", default=None, help="results folder name (default <date>-<device>)")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--data", type=Path, default=Path("bench/data"),
                        help="where GPU grid recordings are published (default bench/data)")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"not a folder: {missing[0]}", file=sys.stderr)
        return 2
    runs: list[tuple[str, dict]] = []
    folder = None
    for i, src in enumerate(args.dirs, 1):
        if folder is None:
            with tempfile.TemporaryDirectory() as tmp:
                unpack(src, Path(tmp))
                data = summarize(Path(tmp))["data"]
            env = data.get("environment") or {}
            date = ((data.get("status") or {}).get("started") or "")[:10] or "undated"
            device = (env.get("device") or {}).get("name", "unknown")
            folder = args.results / (args.name or f"{date}-{slug(device)}")
        runs.append((f"run-{i}", ingest_one(src, folder / f"run-{i}")))
        for line in publish_recordings(folder / f"run-{i}", args.data):
            print(line)
    assert folder is not None
    env = next((d["environment"] for _, d in runs if d.get("environment")), {}) or {}
    device = (env.get("device") or {}).get("label", "unknown device")
    goals = latest_goals(runs)
    lines = [f"# GPU figures — {device}", "",
             f"driver {env.get('driver')}; CUDA {env.get('cuda_runtime')}; torch {env.get('torch')}; "
             f"triton {env.get('triton')}; python {env.get('python')}.", "",
             "Each figure from the latest run that measured it; each run's own table is in its folder.", "",
             *goals_table(goals), ""]
    for name, data in runs:
        steps = (data.get("status") or {}).get("steps", [])
        lines.append(f"- [{name}]({name}/results.md): " + (", ".join(f"{s['name']} {s['status']}" for s in steps)
                                                           or "a hand-made rerun (no status.json)"))
    notes = folder / "NOTES.md"
    if notes.is_file():
        lines += ["", "Read [NOTES.md](NOTES.md) for what these figures mean and what they do not."]
    (folder / "results.md").write_text("\n".join(lines) + "\n")
    (folder / "results.json").write_text(json.dumps({"environment": env, "goals": goals,
                                                     "runs": [name for name, _ in runs]}, indent=1) + "\n")
    for name, _ in reversed(runs):
        document = tuned_export(folder / name)
        if document:
            (folder / "tuned-configs.json").write_text(json.dumps(document, indent=1) + "\n")
            break
    refresh_readme(args.results / "README.md", folder, goals, device)
    print(f"wrote {folder}/results.md, results.json and {len(runs)} run folder(s)")
    return 0
