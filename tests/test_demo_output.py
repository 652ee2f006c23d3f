"""What the real `make demo` wrote, checked after it ran (.ci/run runs it at its CPU size and then
this file with INFERTUNE_DEMO_DIR=runs/demo). tests/test_demo.py covers the demo's logic with
its steps faked; this one is the proof that the README's first command works end to end.

Without INFERTUNE_DEMO_DIR (a plain `make test`) it skips: the demo takes ~10 minutes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_DIR = os.environ.get("INFERTUNE_DEMO_DIR", "")
pytestmark = pytest.mark.skipif(not DEMO_DIR, reason="set INFERTUNE_DEMO_DIR to a `make demo` output (.ci/run does)")

# The demo's steps that write a run directory, and the kind of run each writes.
RUNS = {"autotune": "autotune", "generate": "profile-model", "embed": "profile-model", "kernel": "profile-kernel"}


@pytest.fixture(scope="module")
def out() -> Path:
    return Path(DEMO_DIR)


def load(out: Path, name: str) -> dict:
    path = out / name / "run.json"
    assert path.is_file(), f"the demo wrote no {path}"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_step_wrote_its_run(out, name):
    run = load(out, name)
    assert run["kind"] == RUNS[name]
    assert run["environment"]["device"]["label"]


def test_the_tuning_stored_records(out):
    """Every tuned problem that found a passing config is in the demo's database, read back
    through the public command (`db show --json`)."""
    run = load(out, "autotune")
    tuned = {(t["kernel"], t["problem"]) for t in run["tuning"] if t.get("best_config")}
    assert tuned, "the tuning run found no passing config"
    shown = subprocess.run([sys.executable, "-m", "infertune", "db", "show", "--json", "--db", str(out / "tuning.db")],
                           capture_output=True, text=True, check=False, timeout=120)
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)
    records = records.get("records", records) if isinstance(records, dict) else records
    stored = {(r["kernel"], r["problem_key"]) for r in records}
    assert tuned <= stored, f"tuned but not stored: {sorted(tuned - stored)[:5]}"


def test_the_models_ran_every_variant(out):
    """Every variant of the generation and embedding runs has its figures, and the triton
    variant of the generation run used the tuned database for some launches."""
    figure = {"generate": "decode_tokens_per_s", "embed": "embeddings_per_s"}
    for name, key in figure.items():
        run = load(out, name)
        assert run["variants"], f"{name}: no variants"
        for variant in run["variants"]:
            rows = [r for r in run["models"] if r["variant"] == variant]
            assert rows and all(r[key] > 0 for r in rows), f"{name}: {variant} has no {key}"
    tuned = [r for r in load(out, "generate")["models"] if r["variant"].endswith(":triton")]
    assert tuned and all((r["config_sources"] or {}).get("database", 0) + (r["config_sources"] or {}).get("nearest", 0)
                         > 0 for r in tuned), "the triton variant took no config from the tuned database"


def test_the_report_covers_every_run(out):
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "Traceback" not in html and "Traceback" not in md
    sections = re.findall(r"<section id=\"([^\"]+)\"", html)
    assert len(sections) >= len(RUNS), sections
    for name in RUNS:
        run = load(out, name)
        assert run["name"] in html and run["name"] in md, f"the report does not show the {name} run ({run['name']})"
    # Timings from the CPU interpreter say so.
    if load(out, "kernel")["environment"]["device"].get("kind") != "cuda":
        assert "interpreter" in html.lower()
