"""`infertune autotune`: every flag is honoured in the modes that take it, or refused there
(exit 2, one `error:` line, nothing run); every destination (database, study storage, run
directory, replay file) is checked before the first trial; `--prompt-len` is the prompt
length (`--seq` its alias)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune.cli import app, main
from tuner.quant_search import QuantTuneResult

from .fake_devices import H100


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    """The default runs/ folder of this test, empty: a refused command leaves nothing there."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("INFERTUNE_RUNS", str(folder))
    return folder


@pytest.fixture
def fast_timing(monkeypatch):
    monkeypatch.setenv("INFERTUNE_WARMUP_MS", "0")
    monkeypatch.setenv("INFERTUNE_REP_MS", "0")
    monkeypatch.setenv("INFERTUNE_MIN_REPS_CPU", "2")


def _refused(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["autotune", *args])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert exc.value.code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "trial" not in captured.out and not captured.out.strip()  # no table, no progress: nothing ran
    return err


def _nothing_written(tmp_path: Path, runs: Path, db: Path) -> None:
    assert not Path(f"{db}.studies.db").exists(), "a study was written: trials ran"
    assert not db.is_file(), "the database was written"
    assert not runs.exists() or not any(runs.iterdir()), "a run directory was written"


# -- destinations, checked before the first trial ---------------------------------------

KERNEL = ["rmsnorm", "--shape", "4x64", "--dtype", "fp16", "--trials", "1"]
JOINT = ["matmul", "--shape", "5x48x96", "--dtype", "fp16", "--quant", "int8,int4-g32", "--trials", "1"]


@pytest.mark.parametrize("mode", [KERNEL, JOINT], ids=["kernel", "joint"])
def test_a_directory_as_db_is_refused_before_any_trial(mode, tmp_path, runs, capsys):
    folder = tmp_path / "dbdir"
    folder.mkdir()
    err = _refused([*mode, "--db", str(folder)], capsys)
    assert "is a directory" in err and repr(str(folder)) in err
    _nothing_written(tmp_path, runs, folder)


@pytest.mark.parametrize("mode", [KERNEL, JOINT], ids=["kernel", "joint"])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_an_unwritable_out_is_refused_before_any_trial(mode, where, tmp_path, runs, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory\n")
    out = blocker if where == "file" else blocker / "run"
    db = tmp_path / "t.db"
    err = _refused([*mode, "--db", str(db), "--out", str(out)], capsys)
    assert "--out" in err and "not a directory" in err
    _nothing_written(tmp_path, runs, db)
    assert blocker.read_text() == "not a directory\n"


def test_an_unopenable_storage_is_refused_before_any_trial(tmp_path, runs, capsys):
    db = tmp_path / "t.db"
    (tmp_path / "afile").write_text("")
    storage = f"sqlite:///{tmp_path / 'afile' / 's.db'}"  # under a file: no database can be made there
    err = _refused([*KERNEL, "--db", str(db), "--storage", storage], capsys)
    assert "afile" in err and "not a directory" in err
    _nothing_written(tmp_path, runs, db)


def test_a_directory_as_record_file_is_refused_before_any_trial(tmp_path, runs, capsys):
    err = _refused([*KERNEL, "--sampler", "grid", "--record", str(tmp_path), "--db", str(tmp_path / "t.db")], capsys)
    assert "--record" in err and "is a directory" in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


def test_the_run_directory_is_made_first_and_used(tmp_path, runs, fast_timing):
    out = tmp_path / "a" / "b"
    res = CliRunner().invoke(app, ["autotune", *KERNEL, "--db", str(tmp_path / "t.db"), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["run_dir"] == str(out) and (out / "run.json").is_file()
    assert not runs.exists() or not any(runs.iterdir())


# -- flags a mode has no use for are refused, never ignored --------------------------------

PLAN = ["--model", "smollm2-135m", "--quant-plan", "--trials", "1"]


@pytest.mark.parametrize("extra, flag", [
    (["matmul"], "KERNEL"),
    (["--shape", "4x64x64"], "--shape"),
    (["--batch", "2"], "--batch"),
    (["--seq", "16"], "--prompt-len"),
    (["--prompt-len", "16"], "--prompt-len"),
    (["--gen", "4"], "--gen"),
    (["--quant", "int8"], "--quant"),
    (["--opt", "bias=1"], "--opt"),
    (["--retime", "1"], "--retime"),
    (["--timeout", "5"], "--timeout"),
    (["--trial-timeout", "5"], "--trial-timeout"),
    (["--no-save"], "--no-save"),
    (["--cuda-graph"], "--cuda-graph"),
    (["--compile-workers", "2"], "--compile-workers"),
    (["--min-sqnr", "20"], "--min-sqnr"),
])
def test_plan_search_refuses_flags_it_does_not_use(extra, flag, tmp_path, runs, capsys):
    err = _refused([*PLAN, *extra, "--db", str(tmp_path / "t.db")], capsys)
    assert "--quant-plan" in err and flag in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


def test_plan_search_refuses_a_sampler_it_cannot_run(tmp_path, runs, capsys):
    err = _refused([*PLAN, "--sampler", "grid", "--db", str(tmp_path / "t.db")], capsys)
    assert "tpe or random" in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


@pytest.mark.parametrize("args, flag", [
    ([*JOINT, "--compile-workers", "2"], "--compile-workers"),
    ([*JOINT, "--gen", "4"], "--gen"),
    ([*JOINT, "--max-ppl-increase", "5%"], "--max-ppl-increase"),
    ([*KERNEL, "--max-ppl-increase", "5%"], "--max-ppl-increase"),
    (["rmsnorm", "--model", "smollm2-135m", "--opt", "bias=1"], "--opt"),
    (["rmsnorm", "--model", "smollm2-135m", "--max-ppl-increase", "1%"], "--max-ppl-increase"),
])
def test_other_modes_refuse_flags_they_do_not_use(args, flag, tmp_path, runs, capsys):
    err = _refused([*args, "--db", str(tmp_path / "t.db")], capsys)
    assert flag in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


@pytest.mark.parametrize("extra", [["--gen", "4"], ["--prompt-len", "8"], ["--seq", "8"], ["--batch", "2"]])
def test_workload_flags_need_a_model(extra, tmp_path, runs, capsys):
    err = _refused([*KERNEL, *extra, "--db", str(tmp_path / "t.db")], capsys)
    assert "give --model NAME too" in err
    _nothing_written(tmp_path, runs, tmp_path / "t.db")


# -- flags honoured ------------------------------------------------------------------

def test_joint_search_honours_retime_and_cuda_graph(tmp_path, runs, monkeypatch):
    """--retime and --cuda-graph reach the joint search (a fake GPU; the search itself is
    replaced by one that records what it was given)."""
    from infertune.cli import autotune_cmd, autotune_quant

    seen = {}

    def fake_search(cands, device, *, storage, options, policy, trial_timeout_s, min_sqnr_db, on_trial):
        seen.update(options=options, policy=policy, storage=storage, schemes=[c.scheme.name for c in cands])
        first = cands[0].problem
        return QuantTuneResult(shape={d: first[d] for d in "MNK"}, dtype=first.dtype, device=device.label,
                               study_name="fake", sampler=options.sampler, seed=options.seed, schemes=[]), []

    monkeypatch.setattr(autotune_cmd, "current_device", lambda: H100)
    monkeypatch.setattr(autotune_quant, "autotune_quant", fake_search)
    db = tmp_path / "t.db"
    base = ["autotune", "matmul", "--shape", "16x64x256", "--quant", "w8,int4-g128", "--db", str(db), "--json"]
    res = CliRunner().invoke(app, [*base, "--retime", "0", "--cuda-graph"])
    assert res.exit_code == 0, res.output
    assert seen["options"].retime_top == 0 and seen["policy"].cuda_graph is True
    assert seen["schemes"] == ["int8", "int4-g128"] and seen["storage"] == f"sqlite:///{db}.studies.db"
    res = CliRunner().invoke(app, [*base, "--retime", "2"])
    assert res.exit_code == 0, res.output
    assert seen["options"].retime_top == 2 and seen["policy"].cuda_graph is False


def test_single_scheme_quant_takes_the_alias(tmp_path, runs, monkeypatch):
    """`--quant w4g32` tunes the problem `--quant int4-g32` names (same key, same study)."""
    from infertune.cli import autotune_cmd

    seen = []

    def fake_tune(spec, problem, device, **kw):
        seen.append((spec.name, spec.shape_key(problem)))
        raise KeyboardInterrupt  # stop before anything runs

    monkeypatch.setattr(autotune_cmd, "autotune_problem", fake_tune)
    for quant in ("w4g32", "int4-g32"):
        res = CliRunner().invoke(app, ["autotune", "matmul_w4a16", "--shape", "1x32x64", "--quant", quant,
                                       "--dtype", "fp16", "--db", str(tmp_path / "t.db"), "--json"])
        assert res.exit_code == 130, res.output
    assert seen[0] == seen[1] and "int4-g32" in seen[0][1]


def test_prompt_len_is_the_prompt_length_and_seq_its_alias(tmp_path, runs, monkeypatch):
    from infertune.cli import autotune_cmd

    seen = []

    def fake_tune(spec, problem, device, **kw):
        seen.append(spec.shape_key(problem))
        raise KeyboardInterrupt

    monkeypatch.setattr(autotune_cmd, "autotune_problem", fake_tune)
    keys = {}
    for flag in ("--prompt-len", "--seq"):
        seen.clear()
        res = CliRunner().invoke(app, ["autotune", "rmsnorm", "--model", "smollm2-135m", flag, "7", "--batch", "3",
                                       "--dtype", "fp16", "--db", str(tmp_path / "t.db"), "--json"])
        assert res.exit_code == 130, res.output
        keys[flag] = list(seen)
    assert keys["--prompt-len"] == keys["--seq"] == ["M=21,N=576|fp16"]  # prefill: 3 sequences x 7 tokens


def test_plan_search_uses_db_sampler_and_seed(tmp_path, runs, monkeypatch):
    """--db places the plan study beside the database (so a rerun continues it), --sampler
    and --seed reach the search; the model files are stubbed, the search recorded."""
    import torch

    from infertune.cli import autotune_plan
    from infertune.quant_plan import PlanSearchResult

    seen = {}

    class Files:
        config, tensors = None, {}

    def fake_search(name, config, weights, tokens, **kw):
        seen.update(kw)
        return PlanSearchResult(model=name, trials=0, float_ppl=1.0, float_bytes=1), None

    monkeypatch.setattr(autotune_plan.store, "load", lambda model: Files())
    monkeypatch.setattr(autotune_plan.store, "load_tokenizer", lambda model: None)
    monkeypatch.setattr(autotune_plan, "sample_tokens", lambda tokenizer: torch.zeros(1, 4, dtype=torch.long))
    monkeypatch.setattr(autotune_plan, "search_plan", fake_search)
    db = tmp_path / "t.db"
    res = CliRunner().invoke(app, ["autotune", *PLAN, "--db", str(db), "--sampler", "random", "--seed", "7",
                                   "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    assert seen["storage"] == f"sqlite:///{db}.studies.db" and seen["sampler"] == "random" and seen["seed"] == 7
    assert Path(f"{db}.studies.db").is_file()  # made (and opened) before the search
    assert (tmp_path / "out" / "front.json").is_file()
    storage = f"sqlite:///{tmp_path / 'own.db'}"
    res = CliRunner().invoke(app, ["autotune", *PLAN, "--storage", storage, "--out", str(tmp_path / "o2"), "--json"])
    assert res.exit_code == 0, res.output
    assert seen["storage"] == storage and seen["sampler"] == "tpe" and seen["seed"] == 0


def test_plan_search_refuses_a_directory_as_db(tmp_path, runs, monkeypatch, capsys):
    from infertune.cli import autotune_plan

    class Files:
        config, tensors = None, {}

    monkeypatch.setattr(autotune_plan.store, "load", lambda model: Files())
    monkeypatch.setattr(autotune_plan.store, "load_tokenizer", lambda model: None)
    monkeypatch.setattr(autotune_plan, "sample_tokens", lambda tokenizer: None)
    monkeypatch.setattr(autotune_plan, "search_plan", lambda *a, **k: pytest.fail("the search ran"))
    err = _refused([*PLAN, "--db", str(tmp_path)], capsys)
    assert "is a directory" in err
    assert not Path(f"{tmp_path}.studies.db").exists()


def test_quant_naming_the_kernels_own_scheme_is_accepted(tmp_path, runs, monkeypatch, capsys):
    """matmul_w8a16 runs int8 only: `--quant int8` (or `w8`) names its problem, as no --quant
    does; a scheme another kernel runs is refused naming that kernel."""
    from infertune.cli import autotune_cmd

    seen = []

    def fake_tune(spec, problem, device, **kw):
        seen.append(spec.shape_key(problem))
        raise KeyboardInterrupt

    monkeypatch.setattr(autotune_cmd, "autotune_problem", fake_tune)
    base = ["autotune", "matmul_w8a16", "--shape", "4x64x64", "--dtype", "fp16", "--db", str(tmp_path / "t.db")]
    for extra in ([], ["--quant", "int8"], ["--quant", "w8"]):
        res = CliRunner().invoke(app, [*base, *extra, "--json"])
        assert res.exit_code == 130, res.output
    assert len(seen) == 3 and len(set(seen)) == 1
    err = _refused([*base[1:], "--quant", "w4g128"], capsys)
    assert "int4-g128 runs on matmul_w4a16" in err
