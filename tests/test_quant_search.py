"""The joint quantization-scheme x tile search (tuner/quant_search.py), on synthetic
evaluators whose latency and error per scheme are planted, and its pure front functions."""

from __future__ import annotations

import zlib

import pytest

import kernels
from kernels.spec import Config
from profilers.timing import Timing
from tuner import outcome as oc
from tuner.outcome import Outcome
from tuner.quant_search import SchemeError, candidates, pareto_front, pick, quant_tune
from tuner.search import SearchOptions, to_record

from .fake_devices import CPU, H100, T4

SHAPE = {"M": 16, "N": 64, "K": 256}

# Planted per scheme: (base latency ms, SQNR dB). int8 is the most accurate and slowest,
# int4-g32 is dominated by int4-g64 (slower and less accurate), so it must leave the front.
PLANTED = {"int8": (3.0, 40.0), "int4-g32": (2.8, 24.0), "int4-g64": (2.0, 25.0), "int4-g128": (1.5, 22.0)}


def _timing(ms: float) -> Timing:
    return Timing(ms, ms, ms, ms, ms, 1, "synthetic", False, True)


class Planted:
    """One scheme's evaluator: the planted latency times a per-config factor in [1, 2)."""

    def __init__(self, scheme: str, log: list, wrong: set[Config] | None = None) -> None:
        self.scheme, self.log, self.wrong = scheme, log, wrong or set()

    def evaluate(self, config: Config, stop_above_ms=None) -> Outcome:
        self.log.append((self.scheme, config))
        if config in self.wrong:
            return Outcome.failed(oc.WRONG_RESULT, "wrong result: planted")
        base, db = PLANTED[self.scheme]
        ms = base * (1.0 + (zlib.crc32(str(config).encode()) % 100) / 100.0)
        # summation order moves the error by hundredths of a dB: rounded away by the search
        db += (zlib.crc32(str(config).encode()) % 7) / 1000.0
        if stop_above_ms is not None and ms > stop_above_ms:
            return Outcome(status=oc.EARLY_STOPPED, timing=_timing(ms), reason="planted slow")
        return Outcome(status=oc.OK, timing=_timing(ms), float_sqnr_db=db)

    def baseline(self) -> Outcome:
        return Outcome(status=oc.OK, timing=_timing(4.0))


def _cands(text="int8,int4-g32,int4-g64,int4-g128", device=CPU, dtype="fp16"):
    return candidates(text, SHAPE, dtype, False, device, kernels.get)


def _run(trials=40, sampler="tpe", seed=0, min_sqnr=None, storage=None, wrong=None):
    log: list = []
    cands = _cands()
    result = quant_tune(cands, CPU, lambda c: Planted(c.scheme.name, log, wrong), storage=storage,
                        options=SearchOptions(trials=trials, sampler=sampler, seed=seed), min_sqnr_db=min_sqnr)
    return result, log, cands


def test_pareto_front_and_pick_are_pure_and_right():
    points = {"a": (1.0, 20.0), "b": (2.0, 30.0), "c": (2.5, 25.0), "d": (1.0, 20.0), "e": (3.0, 30.0)}
    # c: b is faster and better; e: b is faster at equal SQNR; a and d tie and both stay
    assert pareto_front(points) == ["a", "d", "b"]
    assert pick(["a", "d", "b"], points, 25.0) == "b"
    assert pick(["a", "d", "b"], points, 19.0) in ("a", "d")
    assert pick(["a", "d", "b"], points, 31.0) is None


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_joint_search_finds_the_planted_front_and_runs_each_config_once(sampler):
    result, log, cands = _run(trials=40, sampler=sampler, seed=2)
    ran = log[:result.trials_run]  # then a re-timing of each scheme's three fastest (retime_top=3)
    ms = {(s, c): Planted(s, []).evaluate(c).timing.median_ms for s, c in ran}
    assert sorted(log[result.trials_run:], key=str) == sorted(
        (x for s in PLANTED for x in sorted((x for x in ran if x[0] == s), key=ms.get)[:3]), key=str)
    assert len(ran) == len(set(ran)) == 40
    spaces = {c.scheme.name: c.space for c in cands}
    assert all(spaces[s].reject_reason(c) is None for s, c in ran)
    # every scheme's heuristic default ran first
    assert [s for s, _ in ran[:4]] == ["int8", "int4-g32", "int4-g64", "int4-g128"]
    assert set(result.per_scheme) == set(PLANTED)
    assert result.front == ["int4-g128", "int4-g64", "int8"]  # int4-g32 dominated by int4-g64
    for s, (_, db) in PLANTED.items():
        assert result.sqnr_db[s] == pytest.approx(db, abs=0.051)
        r = result.per_scheme[s]
        measured = [Planted(s, []).evaluate(c).timing.median_ms for t, c in ran if t == s]
        assert r.best.median_ms == pytest.approx(min(measured))  # each scheme's fastest config wins


def test_min_sqnr_picks_the_fastest_front_point_that_reaches_it():
    assert _run(min_sqnr=24.5)[0].chosen == "int4-g64"
    assert _run(min_sqnr=30)[0].chosen == "int8"
    assert _run(min_sqnr=10)[0].chosen == "int4-g128"
    assert _run(min_sqnr=50)[0].chosen is None
    assert _run()[0].chosen is None  # no threshold, no single winner


def test_wrong_configs_never_win_and_every_scheme_makes_a_record():
    cands = _cands()
    wrong = set()
    for c in cands:  # every valid config of int4-g64 but one is wrong
        wrong |= set(c.space.valid_configs[1:]) if c.scheme.name == "int4-g64" else set()
    keep = next(c for c in cands if c.scheme.name == "int4-g64").space.valid_configs[0]
    result, log, _ = _run(trials=60, wrong=wrong)
    r = result.per_scheme["int4-g64"]
    assert r.best_config is None or r.best_config == keep
    assert result.failures.get(oc.WRONG_RESULT, 0) >= 1
    for s, r in result.per_scheme.items():
        if r.best is None:
            continue
        rec = to_record(next(c for c in cands if c.scheme.name == s).spec, r, CPU)
        assert rec.kernel == ("matmul_w8a16" if s == "int8" else "matmul_w4a16")
        assert rec.quant == ("none" if s == "int8" else s) or rec.quant == s
        assert Config(rec.config) not in wrong


def test_resume_runs_nothing_twice(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first, log1, _ = _run(trials=10, storage=storage)
    second, log2, _ = _run(trials=10, storage=storage)
    ran1, ran2 = log1[:10], log2[:second.trials_run]
    assert second.trials_run == 10 and not set(ran1) & set(ran2)
    assert second.trials_total == 20


def test_schemes_follow_the_device_and_dtype():
    assert [c.scheme.name for c in _cands("all")] == ["int8", "int4-g32", "int4-g64", "int4-g128"]  # no fp8 on CPU
    assert "fp8-row" in [c.scheme.name for c in _cands("all", device=H100)]
    assert "fp8-row" not in [c.scheme.name for c in _cands("all", device=T4)]  # sm_75 has no fp8
    with pytest.raises(SchemeError, match="fp8-row cannot run on this device"):
        _cands("int8,fp8-row")
    with pytest.raises(SchemeError, match="unknown quantization scheme 'int3'"):
        _cands("int8,int3")
    with pytest.raises(SchemeError, match="does not take fp32"):
        _cands("fp8-row", device=H100, dtype="fp32")
    # per-scheme problems carry the scheme's kernel option
    by = {c.scheme.name: c for c in _cands()}
    assert by["int4-g64"].problem.opt("quant") == "int4-g64" and by["int8"].spec.name == "matmul_w8a16"


# -- through the CLI and the real worker (interpreter) ----------------------------------

@pytest.fixture
def fast_timing(monkeypatch):
    monkeypatch.setenv("INFERTUNE_WARMUP_MS", "0")
    monkeypatch.setenv("INFERTUNE_REP_MS", "0")
    monkeypatch.setenv("INFERTUNE_MIN_REPS_CPU", "2")


def test_cli_joint_search_measures_real_sqnr_and_stores_a_record_per_scheme(tmp_path, fast_timing):
    import json

    import torch
    from typer.testing import CliRunner

    from infertune.cli import app
    from kernels.accuracy import sqnr_db
    from tuner.database import open_database

    db = tmp_path / "t.db"
    seed = 5
    res = CliRunner().invoke(app, ["autotune", "matmul", "--shape", "5x48x96", "--dtype", "fp16",
                                   "--quant", "int8,int4-g32,int4-g64", "--trials", "5", "--min-sqnr", "21",
                                   "--seed", str(seed), "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["quant_search"][0]
    points = {p["scheme"]: p for p in out["points"]}
    assert set(points) == {"int8", "int4-g32", "int4-g64"}
    for scheme, cand in ((c.scheme.name, c) for c in candidates("int8,int4-g32,int4-g64", {"M": 5, "N": 48, "K": 96},
                                                                 "fp16", False, CPU, kernels.get)):
        # the same seeded inputs the worker built, quantized the same way: the SQNR of the
        # exact dequantized product against the float one is what the kernel must reach
        inputs = cand.spec.make_inputs(cand.problem, torch.device("cpu"), torch.Generator().manual_seed(seed))
        expected = sqnr_db(cand.spec.float_reference(inputs), cand.spec.reference(inputs))
        assert points[scheme]["sqnr_db"] == pytest.approx(expected, abs=0.2), scheme
    assert points["int8"]["sqnr_db"] > points["int4-g32"]["sqnr_db"] + 10
    assert out["chosen"] in out["front"] and points[out["chosen"]]["sqnr_db"] >= 21
    with open_database(str(db)) as database:
        kinds = {(r.kernel, r.quant) for r in database.records()}
    assert kinds == {("matmul_w8a16", "none"), ("matmul_w4a16", "int4-g32"), ("matmul_w4a16", "int4-g64")}


@pytest.mark.parametrize("args, message", [
    (["rmsnorm", "--shape", "4x64", "--quant", "all"], "linear layer"),
    (["matmul", "--shape", "4x64x64", "--quant", "int8,int5"], "unknown quantization scheme 'int5'"),
    (["matmul", "--shape", "4x64x64", "--quant", "int8,fp8-row"], "fp8-row cannot run on this device"),
    (["matmul", "--shape", "4x64x64", "--min-sqnr", "20"], "--min-sqnr picks among quantization schemes"),
    (["matmul", "--shape", "4x64x64", "--quant", "all", "--sampler", "grid"], "tpe or random"),
    (["matmul", "--shape", "4x64", "--quant", "all"], "M"),
])
def test_cli_joint_search_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    from infertune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["autotune", *args, "--db", str(tmp_path / "t.db")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


class SlowOnRetime(Planted):
    """Planted, except that a scheme's first re-timed config (its fastest in the study) runs
    five times slower when re-timed: re-timing the top two must then pick the runner-up."""

    def __init__(self, scheme: str, log: list, seen: set) -> None:
        super().__init__(scheme, log)
        self.seen, self.retimes = seen, 0

    def evaluate(self, config: Config, stop_above_ms=None) -> Outcome:
        again = (self.scheme, config) in self.seen
        self.seen.add((self.scheme, config))
        outcome = super().evaluate(config, stop_above_ms)
        if again:
            self.retimes += 1
            if self.retimes == 1:
                ms = outcome.timing.median_ms * 5
                return Outcome(status=oc.OK, timing=_timing(ms), float_sqnr_db=outcome.float_sqnr_db)
        return outcome


@pytest.mark.parametrize("top", [0, 1, 2])
def test_retime_top_reruns_each_schemes_fastest_and_the_fastest_rerun_wins(top):
    log: list = []
    seen: set = set()
    trials = 24
    result = quant_tune(_cands(), CPU, lambda c: SlowOnRetime(c.scheme.name, log, seen), storage=None,
                        options=SearchOptions(trials=trials, seed=3, retime_top=top))
    search, retimes = log[:trials], log[trials:]
    assert len(set(search)) == trials  # the search runs each config once; re-timing comes after
    for scheme, r in result.per_scheme.items():
        ran = sorted((c for s, c in search if s == scheme),
                     key=lambda c: Planted(scheme, []).evaluate(c).timing.median_ms)
        assert [c for s, c in retimes if s == scheme] == ran[:top]
        assert len(r.retimed) == min(top, len(ran))
        planted = {c: Planted(scheme, []).evaluate(c).timing.median_ms for c in ran}
        if top == 0:
            assert r.best_config == ran[0] and r.best.median_ms == planted[ran[0]]
        elif top == 1 or len(ran) == 1:  # the only re-timed config, 5x slower on its re-run
            assert r.best_config == ran[0] and r.best.median_ms == pytest.approx(5 * planted[ran[0]])
        else:  # the runner-up's re-run beats the fastest's slow re-run
            assert r.best_config == ran[1] and r.best.median_ms == planted[ran[1]]
