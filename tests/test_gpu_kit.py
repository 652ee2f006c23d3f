"""The GPU kit (bench/device): the runner's steps at CPU sizes, the summary read back from a
real H200 run, ingesting into a results folder, and the synthetic models that stand in for
files that cannot travel to the GPU machine."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from bench.device import ingest, run, summary
from bench.device import models as kit_models
from bench.device.steps import GRID_ENV, Command, Step, _cmd, gpu_steps, smoke_steps

from .fake_devices import CPU, H100
from .models import minilm_dir

ROOT = Path(__file__).resolve().parents[1]
H200_RUN = ROOT / "bench/results/2026-11-28-nvidia-h200/run-3"


def test_gpu_and_smoke_steps_are_the_same_steps_in_the_same_order():
    assert [s.name for s in gpu_steps()] == [s.name for s in smoke_steps()]
    assert [s.name for s in gpu_steps()] == ["env", "gpu-tests", "kernels", "tune", "runtime", "ncu", "ncu-w4",
                                                "warm-start", "confirm", "serving", "grid"]
    for step in gpu_steps():  # no shell anywhere: argv lists only
        assert step.commands and all(isinstance(c.argv, tuple) and c.argv for c in step.commands)


def _tuning_args(command: Command) -> list[str]:
    """A bench.tuning command's own flags: after `env NAME=VALUE ... {py} -m bench.tuning`."""
    argv = list(command.argv)
    start = argv.index("bench.tuning") + 1
    assert argv[start - 3:start - 1] == ["{py}", "-m"]
    return argv[start:]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_grid_step_records_one_grid_on_the_gpu_and_replays_it_in_the_rehearsal(monkeypatch):
    from bench import tuning
    monkeypatch.chdir(ROOT)  # the kit runs from the repository root: --grid-resume bench/data
    gpu, smoke = gpu_steps()[-1], smoke_steps()[-1]
    assert (gpu.name, gpu.cap_s, smoke.name, smoke.cap_s) == ("grid", 200, "grid", 300)
    assert "matmul_w4a16 int4-g128 at 16x4096x4096" in gpu.title and "replays offline" in gpu.title
    (record,) = gpu.commands
    assert record.argv[:3] == ("env", "INFERTUNE_REP_MS=10", "INFERTUNE_WARMUP_MS=3")
    assert GRID_ENV == {"INFERTUNE_REP_MS": "10", "INFERTUNE_WARMUP_MS": "3"}
    args = _tuning_args(record)
    assert args == ["--parts", "grids", "--grid-kernels", "matmul_w4a16", "--grid-shapes", "16x4096x4096",
                    "--compile-workers", "14", "--grid-timeout", "170", "--grid-resume", "bench/data",
                    "--data", "{work}/grids", "--out", "{work}/grid"]
    grids, replays = (_tuning_args(c) for c in smoke.commands)
    assert _flag(grids, "--parts") == "grids" and _flag(replays, "--parts") == "replays"
    assert "--smoke" in grids and "--smoke" in replays
    assert _flag(grids, "--data") == _flag(replays, "--data") == "{work}/grids"  # the replays read the grid
    assert _flag(grids, "--grid-resume") == "bench/data"  # a partial grid ingested there is completed
    assert _flag(grids, "--out") != _flag(replays, "--out")
    # Every bench.tuning command of both lists passes bench.tuning's own checks of its flags.
    for flags in (args, grids, replays):
        parsed = tuning.parse_args(flags)
        assert parsed.grid_kernels == ["matmul_w4a16"] and parsed.parts in (("grids",), ("replays",))
    assert tuning.parse_args(args).grid_shapes == ((16, 4096, 4096),)


def test_a_commands_environment_reaches_its_program_without_a_shell(tmp_path):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "INFERTUNE_REP_MS": "50"}
    code = "import os; print('rep', os.environ['INFERTUNE_REP_MS'], os.environ['INFERTUNE_WARMUP_MS'])"
    step = Step("env", "env", 30, (_cmd("{py}", "-c", code, env=GRID_ENV),))
    row = run.run_step(step, work, env, __import__("time").monotonic() + 60)
    assert row["status"] == "ok"
    assert "rep 10 3" in (work / "logs/env.log").read_text()  # the command's own beat the runner's
    with pytest.raises(ValueError):
        _cmd("{py}", env={"A=B": "1"})
    assert _cmd("{py}", "-V").argv == ("{py}", "-V")  # no env: the program itself


def _step(name: str, code: str, cap: float = 30.0) -> Step:
    return Step(name, name, cap, (Command(("{py}", "-c", code)),))


def test_a_failing_or_hanging_step_is_recorded_and_the_next_one_runs(tmp_path):
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin"}
    deadline = __import__("time").monotonic() + 60
    ok = run.run_step(_step("ok", "print('fine')"), work, env, deadline)
    bad = run.run_step(_step("bad", "import sys; sys.exit(3)"), work, env, deadline)
    hang = run.run_step(_step("hang", "import time; time.sleep(60)", cap=3.0), work, env, deadline)
    assert (ok["status"], bad["status"], hang["status"]) == ("ok", "failed", "timed out")
    assert bad["commands"][0]["exit"] == 3 and hang["commands"][0]["exit"] is None
    assert hang["seconds"] < 15  # killed at its cap, not waited for
    assert "fine" in (work / "logs/ok.log").read_text()
    missing = run.run_step(Step("gone", "gone", 5, (Command(("no-such-program-xyz",)),)), work, env, deadline)
    assert missing["status"] == "failed" and "could not start" in (work / "logs/gone.log").read_text()


def test_unknown_step_is_a_usage_error(tmp_path, capsys):
    assert run.main(["--smoke", "--steps", "kernels,gpus", "--out", str(tmp_path)]) == 2
    assert "unknown step 'gpus'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the smoke kit is the CPU stand-in of the GPU run")
def test_smoke_kit_runs_every_step_and_ingests(tmp_path, monkeypatch):
    """The whole kit at CPU sizes, as on the GPU machine: every step ok, the files that come
    back, then ingest into a results folder whose tuned records `infertune db import` takes."""
    packed = tmp_path / "packed"
    if _has_minilm():
        kit_models.pack("minilm-l6", packed)
    out, work = tmp_path / "out", tmp_path / "work"
    monkeypatch.chdir(ROOT)
    argv = [sys.executable, "-m", "bench.device", "run", "--smoke", "--budget", "900", "--out", str(out),
            "--work", str(work), "--models", str(packed), "--steps", "env,kernels,tune,runtime,ncu"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    status = json.loads((out / "status.json").read_text())
    assert [s["status"] for s in status["steps"]] == ["ok"] * 5, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0
    assert (out / "kit.tar.gz").is_file() and (out / "results.md").is_file()
    text = (out / "results.md").read_text()
    assert "say nothing about GPU speed" in text and "both sides run Triton's path" in text
    data = json.loads((out / "results.json").read_text())
    assert data["environment"]["device"]["kind"] == "cpu"
    assert data["kernels"]["per_kernel"]["matmul"]["all_correct"]
    unpack = data["int4_unpacking"]  # on the CPU both sides run Triton's unpacking: plumbing only
    assert [(r["M"], r["N"], r["K"]) for r in unpack["rows"]] == [(1, 96, 64)] and unpack["rows"][0]["correct"]
    tma = data["matmul_tma"]  # TMA=1 under the interpreter's emulated descriptors: plumbing only
    assert [(r["M"], r["N"], r["K"]) for r in tma["rows"]] == [(13, 96, 64)] and tma["rows"][0]["correct"]
    split = data["split_k"]  # SPLIT_K=2 beside the interpreter's default (1): plumbing only
    assert [(r["kernel"], r["M"]) for r in split["rows"]] == [("matmul", 1), ("matmul_w8a16", 1), ("matmul_w4a16", 1)]
    assert all(r["correct"] for r in split["rows"])
    reduce = data["splitk_reduce"]  # the interpreter's defaults do not split: plumbing only
    assert {r["kernel"] for r in reduce["rows"]} == {"matmul", "matmul_w8a16", "matmul_w4a16"}
    assert {r["kernel"] for r in data["tune"]["rows"]} == {"matmul", "matmul_w4a16"}
    assert data["ncu"]["matmul"]["status"] in ("absent", "refused", "failed")
    minilm = data["runtime"]["minilm"]
    assert ("embeddings_per_s" in minilm) == _has_minilm()  # synthetic MiniLM made from the packed files

    results = tmp_path / "results"
    (results / "README.md").parent.mkdir()
    (results / "README.md").write_text("# Benchmark results\n")
    for _ in range(2):  # ingesting again replaces the table, never duplicates it
        assert ingest.main([str(out), "--results", str(results), "--name", "smoke", "--data",
                            str(tmp_path / "data")]) == 0
    readme = (results / "README.md").read_text()
    assert readme.count(ingest.README_BEGIN) == 1 and "smoke/results.md" in readme
    folder = results / "smoke"
    assert (folder / "run-1/kernels/results.json").is_file() and not list(folder.rglob("*.db"))
    db = tmp_path / "imported.db"
    imported = subprocess.run([sys.executable, "-m", "infertune", "db", "import", str(folder / "tuned-configs.json"),
                               "--db", str(db)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0 and "imported 2 of 2" in imported.stdout, imported.stderr


def _has_minilm() -> bool:
    from runtime import store
    return store.model_path("minilm-l6") is not None


def test_summary_of_the_h200_run_matches_its_raw_files():
    """The committed H200 run, read back: every figure recomputed from the raw JSON."""
    data = summary.summarize(H200_RUN)["data"]
    raw = json.loads((H200_RUN / "kernels/results.json").read_text())["results"]
    for name, figures in data["kernels"]["per_kernel"].items():
        speedups = [r["speedup"] for r in raw if r["kernel"] == name]
        assert figures["geomean"] == pytest.approx(math.exp(sum(map(math.log, speedups)) / len(speedups)))
        assert figures["worst"] == min(speedups) and figures["shapes"] == len(speedups)
    tuned = [r for f in sorted(H200_RUN.glob("tune-*.json")) for r in json.loads(f.read_text())["results"]]
    assert len(data["tune"]["rows"]) == len(tuned)
    status = json.loads((H200_RUN / "status.json").read_text())
    tune_cmds = [c for s in status["steps"] if s["name"] == "tune" for c in s["commands"] if "autotune" in c["argv"]]
    cost = next(g for g in data["goals"] if g["figure"].startswith("tuning cost"))
    assert cost["value"] == pytest.approx(sum(c["seconds"] for c in tune_cmds) / sum(r["trials_run"] for r in tuned))
    w4 = next(g for g in data["goals"] if g["figure"].startswith("matmul_w4a16"))
    w4_rows = [r["speedup_over_baseline"] for r in tuned if r["kernel"] == "matmul_w4a16" and r["shape"]["M"] <= 16]
    assert w4["value"] == pytest.approx(summary.geomean(w4_rows)) and w4["met"] is (w4["value"] >= summary.GOAL_W4)
    assert "| matmul_w4a16 |" in summary.markdown(data)


def _bench_row(kernel: str, m: int, ms: float, ok: bool = True) -> dict:
    return {"kernel": kernel, "shape": {"M": m, "N": 4096, "K": 4096}, "options": {"quant": "int4-g128"},
            "triton": {"median_ms": ms}, "baseline": {"median_ms": 0.02}, "speedup": 0.02 / ms,
            "accuracy": {"ok": ok}}


def test_int4_unpacking_pairs_the_same_shapes(tmp_path):
    """The PTX-vs-Triton table: rows paired by shape, ratio Triton ms / PTX ms, any wrong side
    marks the row; unpaired rows and other kernels are left out."""
    for folder, rows in (("kernels", [_bench_row("matmul_w4a16", 1, 0.010), _bench_row("matmul_w4a16", 16, 0.020),
                                      _bench_row("matmul", 1, 0.5)]),
                         ("kernels-int4-bits", [_bench_row("matmul_w4a16", 1, 0.025),
                                                _bench_row("matmul_w4a16", 16, 0.030, ok=False),
                                                _bench_row("matmul_w4a16", 128, 0.1)])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({"results": rows}))
    data = summary.summarize(tmp_path)["data"]
    rows = data["int4_unpacking"]["rows"]
    assert [(r["M"], round(r["ptx_speedup"], 6), r["correct"]) for r in rows] == [(1, 2.5, True), (16, 1.5, False)]
    assert data["int4_unpacking"]["geomean"] == pytest.approx(math.sqrt(2.5 * 1.5))
    text = summary.markdown(data)
    assert "nibble unpacking in PTX" in text and "| 1 | 4096 | 4096 | 0.0100 | 0.0250 | 2.50x |" in text
    assert "| 16 | 4096 | 4096 | 0.0200 | 0.0300 | 1.50x | 0.0200 | NO |" in text


def test_matmul_tma_pairs_the_default_rows(tmp_path):
    """The TMA A/B: each TMA=1 row beside the default (TMA=0) row of its shape, default ms / TMA ms."""
    def row(m, ms):
        return {**_bench_row("matmul", m, ms), "options": {}}
    for folder, rows in (("kernels", [row(128, 0.030), row(2048, 0.200)]),
                         ("kernels-matmul-tma", [row(128, 0.025), row(2048, 0.250)])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({"results": rows}))
    data = summary.summarize(tmp_path)["data"]
    rows = data["matmul_tma"]["rows"]
    assert [(r["M"], round(r["tma_speedup"], 6)) for r in rows] == [(128, 1.2), (2048, 0.8)]
    assert data["matmul_tma"]["geomean"] == pytest.approx(math.sqrt(1.2 * 0.8))
    assert "| 2048 | 4096 | 4096 | 0.2000 | 0.2500 | 0.80x |" in summary.markdown(data)
    assert data["int4_unpacking"] is None


def test_split_k_pairs_every_matmul_kernel(tmp_path):
    """The skinny split-K A/B: each kernel's one-program-per-SM row beside its default row,
    one-per-SM ms / default ms; a kernel or shape missing on one side is left out."""
    def row(kernel, m, ms):
        return {**_bench_row(kernel, m, ms), "options": {}}
    for folder, rows in (("kernels", [row("matmul", 1, 0.010), row("matmul_w8a16", 1, 0.008),
                                      row("matmul_w4a16", 16, 0.006), row("matmul", 2048, 0.2)]),
                         ("kernels-split-once", [row("matmul", 1, 0.012), row("matmul_w8a16", 1, 0.006),
                                                 row("matmul_w4a16", 1, 0.009)])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({"results": rows}))
    data = summary.summarize(tmp_path)["data"]
    rows = data["split_k"]["rows"]
    assert [(r["kernel"], r["M"], round(r["default_speedup"], 6)) for r in rows] == [
        ("matmul", 1, 1.2), ("matmul_w8a16", 1, 0.75)]
    assert data["split_k"]["geomean"] == pytest.approx(math.sqrt(1.2 * 0.75))
    text = summary.markdown(data)
    assert "| kernel | M | N | K | default ms | one per SM ms |" in text
    assert "| matmul_w8a16 | 1 | 4096 | 4096 | 0.0080 | 0.0060 | 0.75x |" in text


def test_splitk_reduce_pairs_the_default_rows(tmp_path):
    def row(kernel, m, ms):
        return {**_bench_row(kernel, m, ms), "options": {}}
    for folder, rows in (("kernels", [row("matmul", 1, 0.010), row("matmul_w4a16", 16, 0.005)]),
                         ("kernels-splitk-kernel", [row("matmul", 1, 0.013), row("matmul_w4a16", 16, 0.006)])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({"results": rows}))
    data = summary.summarize(tmp_path)["data"]
    got = [(r["kernel"], round(r["serial_speedup"], 6)) for r in data["splitk_reduce"]["rows"]]
    assert got == [("matmul", 1.3), ("matmul_w4a16", 1.2)]
    assert "| matmul | 1 | 4096 | 4096 | 0.0100 | 0.0130 | 1.30x |" in summary.markdown(data)


def test_summary_of_an_empty_run_says_what_is_missing(tmp_path):
    data = summary.summarize(tmp_path)["data"]
    assert data["kernels"] is None and data["tune"] is None and data["int4_unpacking"] is None
    assert data["matmul_tma"] is None and data["split_k"] is None and data["splitk_reduce"] is None
    tpe = next(g for g in data["goals"] if g["figure"] == "TPE on recorded grids")
    assert tpe["met"] is None and "not measured" in tpe["note"]


def test_ingest_refuses_archive_members_outside_the_folder(tmp_path):
    import io
    import tarfile
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(src / "kit.tar.gz", "w:gz") as tar:
        for name in ("../escape.txt", "ok/inside.txt"):
            payload = b"x"
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    ingest.unpack(src, tmp_path / "dest")
    assert (tmp_path / "dest/ok/inside.txt").is_file() and not (tmp_path / "escape.txt").exists()


def test_synthetic_minilm_has_the_real_shapes_and_loads(tmp_path, monkeypatch):
    real = minilm_dir()
    packed = kit_models.pack("minilm-l6", tmp_path / "packed")
    assert not list(packed.rglob("*.safetensors"))  # the weights never travel
    assert sum(p.stat().st_size for p in packed.rglob("*") if p.is_file()) < 2 << 20
    monkeypatch.setenv("INFERTUNE_MODELS", str(tmp_path / "cache"))
    made = kit_models.unpack(packed)
    with safe_open(str(real / "model.safetensors"), "pt") as a, safe_open(str(made / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            assert a.get_slice(key).get_shape() == b.get_slice(key).get_shape(), key
            assert a.get_slice(key).get_dtype() == b.get_slice(key).get_dtype(), key
        assert b.metadata()["infertune"] == "synthetic"
        ln = b.get_tensor("encoder.layer.0.output.LayerNorm.weight")
        assert torch.equal(ln, torch.ones_like(ln))
        w = b.get_tensor("encoder.layer.0.output.dense.weight")
        assert 0.015 < w.std().item() < 0.025 and not torch.equal(w, a.get_tensor("encoder.layer.0.output.dense.weight"))
    from sentence_transformers import SentenceTransformer
    vectors = SentenceTransformer(str(made), device="cpu").encode(["a first text", "another one"])
    assert vectors.shape == (2, 384) and torch.isfinite(torch.as_tensor(vectors)).all()
    shutil.rmtree(tmp_path / "cache")


def test_bundle_covers_every_requirement_the_image_lacks():
    """Every requirement of pyproject (runtime and dev) that applies on the GPU machine's
    Python is in the image or in the committed bundle list (`make gpu-bundle` rewrites it)."""
    from packaging.utils import canonicalize_name

    from bench.device import bundle
    image, carried = bundle.image_packages(), bundle.bundle_names()
    reqs = bundle.project_requirements()
    assert {"torch", "optuna", "sqlalchemy", "pytest"} <= {canonicalize_name(r.name) for r in reqs}
    for req in reqs:
        if bundle.applies(req):
            name = canonicalize_name(req.name)
            assert name in image or name in carried, f"{req} is neither in image.txt nor in bundle.txt"
    assert not carried & set(image), "a wheel is carried for a package the image has"
    assert {canonicalize_name(r.name) for r in bundle.plan(reqs, image)} <= carried
    assert image["torch"] == "2.11.0" and image["triton"] == "3.6.0" and image["numpy"] == "2.5.2"


def test_bundle_markers_are_the_gpu_machines():
    from packaging.requirements import Requirement

    from bench.device import bundle
    assert bundle.applies(Requirement("triton>=3.2; platform_system == 'Linux' and platform_machine == 'x86_64'"))
    assert not bundle.applies(Requirement("pywin32; sys_platform == 'win32'"))
    assert not bundle.applies(Requirement("tomli; python_version < '3.11'"))
    assert bundle.applies(Requirement("psycopg-binary; extra == 'binary'"), frozenset({"binary"}))
    assert not bundle.applies(Requirement("psycopg-pool; extra == 'pool'"), frozenset({"binary"}))


def _recording(device, configs: int):
    import kernels
    from profilers.timing import Timing
    from tuner.outcome import Outcome
    from tuner.replay import Recording
    from tuner.space import Space

    spec = kernels.get("matmul")
    problem = spec.problem({"M": 16, "N": 32, "K": 32}, "bf16")
    valid = Space(spec, problem, device).valid_configs[:configs]
    timing = Timing(1.0, 0.9, 1.1, 0.9, 1.0, 10, "cuda-events", True, False)
    return Recording("matmul", problem, device, None, {c: Outcome(status="ok", timing=timing) for c in valid})


def test_ingest_publishes_gpu_grids_to_the_data_folder(tmp_path):
    """A run's grids/*.json measured on a GPU go to bench/data (--data), where the next
    window's grid step resumes them; a CPU (smoke) recording never does, and one already
    there with more configs of the grid is kept."""
    run_dir, data = tmp_path / "run-1", tmp_path / "data"
    (run_dir / "grids").mkdir(parents=True)
    _recording(H100, 5).save(run_dir / "grids" / "matmul-16x32x32-bf16-nvidia-h100.json")
    _recording(CPU, 5).save(run_dir / "grids" / "matmul-16x32x32-bf16-cpu.json")
    (run_dir / "grids" / "broken.json").write_text("{")
    said = ingest.publish_recordings(run_dir, data)
    assert [p.name for p in data.iterdir()] == ["matmul-16x32x32-bf16-nvidia-h100.json"]
    assert any(line.startswith("not published: broken.json") for line in said)
    assert any(line.startswith("published") and "5 configs" in line for line in said)
    _recording(H100, 8).save(data / "matmul-16x32x32-bf16-nvidia-h100.json")  # a fuller one is there
    said = ingest.publish_recordings(run_dir, data)
    assert any(line.startswith("kept") and "8 configs" in line for line in said)
    assert len(json.loads((data / "matmul-16x32x32-bf16-nvidia-h100.json").read_text())["configs"]) == 8


def test_a_partial_runtime_says_so_beside_its_missing_goals(tmp_path):
    (tmp_path / "runtime").mkdir()
    goals = [{"goal": "decode >= 80% of the roofline", "value": 0.75, "target": 0.8, "met": False},
             {"goal": "decode >= 2.0x transformers", "value": None, "target": 2.0, "met": None}]
    (tmp_path / "runtime/results.json").write_text(json.dumps(
        {"pending": "transformers, the cross-check and MiniLM not measured yet", "goals": goals}))
    data = summary.summarize(tmp_path)["data"]
    rows = [g for g in data["goals"] if g["source"] == "runtime"]
    assert [(g["value"], g["note"]) for g in rows] == [
        (0.75, ""), (None, "partial run: transformers, the cross-check and MiniLM not measured yet")]
