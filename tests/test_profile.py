"""`infertune profile`: the bound classification and variant parsing (pure), the run
directory (schema-valid run.json, atomic, readable), and the commands on the CPU: kernel
variants checked and timed against the torch baseline, a torch trace, telemetry and
Nsight recorded as unavailable with their reasons while the rest runs."""

from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from infertune.cli import app, main
from infertune.errors import UsageError
from infertune.profiling import classify, parse_kernel_variants
from infertune.rundir import RunDirError, read_run, skeleton, validate, write_run
from kernels.spec import Config

runner = CliRunner()


@pytest.fixture
def fast(monkeypatch, tmp_path):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "3",
                 "INFERTUNE_DB": str(tmp_path / "tuned.db")}.items():
        monkeypatch.setenv(k, v)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_classify():
    peak_f, peak_b = 1000e12, 3e12  # ridge at 333 FLOP/byte
    # 16x4096x4096 bf16: AI ~16 -> memory bound when it moves bytes near peak
    assert classify(2 * 16 * 4096 * 4096, 34_000_000, 15e-6, peak_f, peak_b)[0] == "memory"
    # a big square matmul near peak FLOP/s is compute bound
    assert classify(2 * 8192**3, 3 * 2 * 8192**2, 1.4e-3, peak_f, peak_b)[0] == "compute"
    # tiny work over a long time: neither resource is busy
    bound, pf, pb = classify(1_000_000, 100_000, 10e-6, peak_f, peak_b)
    assert bound == "latency" and pf < 0.2 and pb < 0.2
    assert classify(1, 1, 1.0, None, None) == ("unknown", None, None)


def test_parse_kernel_variants():
    got = parse_kernel_variants("torch,default,tuned,BLOCK_M=64,BLOCK_N=32")
    assert [v.name for v in got[:3]] == ["torch", "default", "tuned"]
    assert got[3].config == Config(BLOCK_M=64, BLOCK_N=32)
    two = parse_kernel_variants("BLOCK_M=16,default,BLOCK_M=32")
    assert [v.config for v in two] == [Config(BLOCK_M=16), None, Config(BLOCK_M=32)]
    for bad in ("", "fast", "torch,torch"):
        with pytest.raises(UsageError):
            parse_kernel_variants(bad)


def test_run_json_is_validated_and_written_atomically(tmp_path):
    run = skeleton("profile-kernel", "x", ["infertune"], {"device": {"label": "cpu", "kind": "cpu"}, "torch": "2"})
    path = write_run(tmp_path, run)
    assert read_run(tmp_path) == json.loads(path.read_text())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".run.")]
    bad = dict(run, measurements=[{"variant": "v"}])
    with pytest.raises(RunDirError, match="measurements/0"):
        validate(bad)
    (tmp_path / "run.json").write_text(json.dumps(dict(run, schema="other/9")))
    with pytest.raises(RunDirError, match="not an infertune run"):
        read_run(tmp_path)
    with pytest.raises(RunDirError, match="no run.json"):
        read_run(tmp_path / "nowhere")


def test_profile_kernel_on_the_cpu_writes_a_valid_run(tmp_path, fast):
    out = tmp_path / "run"
    res = runner.invoke(app, ["profile", "kernel", "matmul", "--shape", "13x96x64", "--dtype", "fp16",
                              "--variants", "torch,default,tuned,BLOCK_M=16,BLOCK_N=32,BLOCK_K=32",
                              "--torch-trace", "--telemetry", "--nsys", "--ncu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = read_run(out)  # schema-valid
    assert run["kind"] == "profile-kernel" and run["baseline"] == "torch"
    rows = {r["variant"]: r for r in run["measurements"]}
    assert set(rows) == {"torch", "default", "tuned", "BLOCK_K=32,BLOCK_M=16,BLOCK_N=32"}
    for name, r in rows.items():
        assert r["timing"]["median_ms"] > 0 and r["flops"] == 2 * 13 * 96 * 64
        assert r["speedup_vs_baseline"] == pytest.approx(rows["torch"]["timing"]["median_ms"] / r["timing"]["median_ms"])
        if name != "torch":
            assert r["accuracy"]["ok"] and r["config"]
    assert rows["tuned"]["config_source"] == "heuristic"  # an empty database
    assert rows["BLOCK_K=32,BLOCK_M=16,BLOCK_N=32"]["config_source"] == "caller"
    # every tool is recorded; absent ones with their reason, and the run went on
    assert run["profilers"]["torch_trace"]["status"] == "ok" and (out / "trace.json").is_file()
    trace = json.loads((out / "trace.json").read_text())
    assert trace["traceEvents"]
    if not torch.cuda.is_available():
        assert run["telemetry"]["available"] is False and run["telemetry"]["reason"]
        assert run["profilers"]["nsys"]["status"] in ("absent", "refused", "failed")
        assert run["profilers"]["ncu"]["status"] in ("absent", "refused", "failed")
        assert any("interpreter" in n for n in run["notes"])
    assert "baseline: torch" in res.output and "run directory" in res.output


@pytest.mark.parametrize("args, message", [
    (["kernel", "nokernel", "--shape", "4x4x4"], "unknown kernel"),
    (["kernel", "matmul", "--shape", "4x4"], "M"),
    (["kernel", "matmul", "--shape", "4x4x4", "--variants", "fastest"], "unknown kernel variant"),
    (["kernel", "matmul", "--shape", "4x4x4", "--variants", "BLOCK_Q=4"], "BLOCK_Q"),
    (["model", "nomodel"], "unknown model"),
    (["model", "smollm2-135m", "--variants", "bf16+w3"], "malformed variant"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_profile_model_on_a_tiny_local_model(tmp_path, fast):
    from .test_runtime_cli import _tiny_llama_dir

    model_dir = _tiny_llama_dir(tmp_path / "tiny")
    out = tmp_path / "run"
    res = runner.invoke(app, ["profile", "model", str(model_dir), "--variants", "fp32,fp32+w8,fp32:triton-default",
                              "--batch", "1,2", "--prompt-len", "5", "--gen", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = read_run(out)
    assert run["kind"] == "profile-model" and run["baseline"] == "fp32:torch"
    rows = run["models"]
    assert [(r["variant"], r["batch"]) for r in rows] == [
        ("fp32:torch", 1), ("fp32:torch", 2), ("fp32+w8:torch", 1), ("fp32+w8:torch", 2),
        ("fp32:triton-default", 1), ("fp32:triton-default", 2)]
    for r in rows:
        assert r["prefill_tokens_per_s"] > 0 and r["decode_tokens_per_s"] > 0 and r["weight_bytes"] > 0
    w8 = next(r for r in rows if r["variant"] == "fp32+w8:torch")
    assert w8["weight_bytes"] < rows[0]["weight_bytes"]
    assert rows[-1]["config_sources"] == {"heuristic": rows[-1]["config_sources"]["heuristic"]}


def test_profile_model_of_a_synthetic_preset_says_its_outputs_mean_nothing(tmp_path, fast):
    # The demo's stand-in for SmolLM2 where its file is absent: speed figures with a note.
    out = tmp_path / "run"
    res = runner.invoke(app, ["profile", "model", "smollm2-synth", "--variants", "fp32:torch", "--batch", "1",
                              "--prompt-len", "3", "--gen", "2", "--no-quality", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = read_run(out)
    assert run["models"][0]["model"] == "smollm2-synth" and run["models"][0]["decode_tokens_per_s"] > 0
    assert any("smollm2-synth is synthetic" in n for n in run["notes"])
    plain = tmp_path / "plain"
    from .test_runtime_cli import _tiny_llama_dir
    res = runner.invoke(app, ["profile", "model", str(_tiny_llama_dir(tmp_path / "tiny")), "--variants", "fp32",
                              "--prompt-len", "3", "--gen", "2", "--out", str(plain)])
    assert res.exit_code == 0 and not any("synthetic" in n for n in read_run(plain)["notes"])


def test_telemetry_flags_the_measurements_it_saw_throttle(tmp_path, fast, monkeypatch):
    """A fake NVML whose clocks drop and which reports a power cap: the run's telemetry is
    available, summarized, written as CSV, and the measurements taken then are flagged."""
    from profilers import nvml

    from .test_nvml import STEADY, ScriptedBackend

    script = [dict(STEADY)] * 3 + [dict(STEADY, sm_clock_mhz=1400, throttle_mask=0x4)] * 200
    real = nvml.Sampler

    def fake_sampler(interval_ms=50.0, device_index=0, backend=None):
        return real(interval_ms=2.0, device_index=device_index, backend=ScriptedBackend(script))

    monkeypatch.setattr(nvml, "Sampler", fake_sampler)
    out = tmp_path / "run"
    res = runner.invoke(app, ["profile", "kernel", "rmsnorm", "--shape", "13x257", "--dtype", "fp32",
                              "--variants", "torch,default", "--telemetry", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = read_run(out)
    t = run["telemetry"]
    assert t["available"] and "throttled" in t["summary"]["flags"] and "clocks-moved" in t["summary"]["flags"]
    assert (out / t["samples_file"]).is_file() and t["samples_file"] in run["artifacts"]
    flagged = [r for r in run["measurements"] if "throttled" in r.get("telemetry_flags", [])]
    assert flagged and all(r["window_s"][0] <= r["window_s"][1] for r in run["measurements"])
    assert any("measured while" in n for n in run["notes"])
