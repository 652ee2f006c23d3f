"""Bad invocations of every subcommand: exit code 2 and exactly one line `error: ...` on
stderr, never a traceback (issue 13). Each case runs in-process through the console script's
entry point (`infertune.cli.main`) and is refused before any real work starts.

A case is (id, argv, environment overrides). Placeholders in argv and the environment
are replaced by paths under the test's tmp_path: <tmp> the folder itself, <file> a plain
file, <ro> a read-only folder, <empty> an empty folder, <junkrun> a run directory whose
run.json is not JSON, <listrun> one whose run.json is a JSON list, <deeprun> one nested
200,000 levels deep.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from infertune.cli import main
from kernels.device import current_device, dtype_unsupported_reason

BIG = str(10**30)
ARABIC = "\u0661\u0662"  # '١٢': int() reads it as 12
NL = "new\nline"
FP8_HERE = dtype_unsupported_reason("fp8", current_device()) is None
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders

Case = tuple[str, list[str], dict[str, str]]

CASES: list[Case] = [
    # the top level
    ("unknown-command", ["nosuch"], {}),
    ("unknown-global-option", ["--bogus"], {}),
    # env, kernels
    ("env-unknown-option", ["env", "--bogus"], {}),
    ("env-extra-argument", ["env", "extra"], {}),
    ("kernels-extra-argument", ["kernels", "--json", "extra"], {}),
    # check
    ("check-unknown-kernel", ["check", "nosuch"], {}),
    ("check-empty-kernel", ["check", ""], {}),
    ("check-empty-dtype", ["check", "matmul", "--dtype", ""], {}),
    ("check-unknown-dtype", ["check", "--dtype", "fp64"], {}),
    ("check-dtype-kernel-lacks", ["check", "matmul_fp8", "--dtype", "fp32"], {}),
    ("check-seed-huge", ["check", "matmul", "--seed", BIG], {}),
    ("check-seed-2-32", ["check", "matmul", "--seed", str(2**32)], {}),
    ("check-seed-negative", ["check", "matmul", "--seed", "-1"], {}),
    ("check-seed-nan", ["check", "matmul", "--seed", "nan"], {}),
    ("check-seed-arabic", ["check", "matmul", "--seed", ARABIC], {}),
    # bench
    ("bench-unknown-kernel", ["bench", "nosuch", "--shape", "13x13x13"], {}),
    ("bench-arabic-shape", ["bench", "matmul", "--shape", f"{ARABIC}x13x13"], {}),
    ("bench-arabic-named-shape", ["bench", "matmul", "--shape", f"M={ARABIC},N=13,K=13"], {}),
    ("bench-empty-shape", ["bench", "matmul", "--shape", ""], {}),
    ("bench-short-shape", ["bench", "matmul", "--shape", "13x13"], {}),
    ("bench-negative-shape", ["bench", "matmul", "--shape", "-1x13x13"], {}),
    ("bench-zero-shape", ["bench", "matmul", "--shape", "0x13x13"], {}),
    ("bench-huge-shape", ["bench", "matmul", "--shape", "100000000x100000000x100000000", "--dtype", "fp32"], {}),
    ("bench-overflowing-shape", ["bench", "rmsnorm", "--shape", f"{BIG}x{BIG}", "--dtype", "fp32"], {}),
    ("bench-seed-huge", ["bench", "matmul", "--shape", "13x13x13", "--seed", BIG], {}),
    ("bench-seed-negative", ["bench", "matmul", "--shape", "13x13x13", "--seed", "-1"], {}),
    ("bench-empty-dtype", ["bench", "matmul", "--shape", "13x13x13", "--dtype", ""], {}),
    ("bench-unknown-dtype", ["bench", "matmul", "--shape", "13x13x13", "--dtype", "fp64"], {}),
    ("bench-empty-config", ["bench", "matmul", "--shape", "13x13x13", "--config", ""], {}),
    ("bench-bad-config", ["bench", "matmul", "--shape", "13x13x13", "--config", "BLOCK_M=abc"], {}),
    ("bench-unknown-param", ["bench", "matmul", "--shape", "13x13x13", "--config", "NOPE=1"], {}),
    ("bench-bad-opt", ["bench", "matmul", "--shape", "13x13x13", "--opt", "bias"], {}),
    ("bench-config-and-db", ["bench", "matmul", "--shape", "13x13x13", "--config", "BLOCK_M=16", "--db",
                             "<tmp>/t.db"], {}),
    ("bench-db-unknown-kind", ["bench", "matmul", "--shape", "13x13x13", "--db", "foo://x"], {}),
    ("bench-db-mysql", ["bench", "matmul", "--shape", "13x13x13", "--db", "mysql://u@h/d"], {}),
    ("bench-db-missing", ["bench", "matmul", "--shape", "13x13x13", "--db", "<tmp>/missing.db"], {}),
    ("bench-db-not-a-database", ["bench", "matmul", "--shape", "13x13x13", "--db", "<file>"], {}),
    ("bench-db-empty", ["bench", "matmul", "--shape", "13x13x13", "--db", ""], {}),
    # a --db the user names must open: never a quiet fall back to the heuristic
    ("generate-db-missing", ["generate", "--prompt", "hi", "--db", "<tmp>/missing.db"], {}),
    ("embed-db-missing", ["embed", "hello", "--db", "<tmp>/missing.db"], {}),
    ("profile-kernel-db-missing", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--db", "<tmp>/missing.db",
                                   "--out", "<tmp>/run-k"], {}),
    ("profile-model-db-missing", ["profile", "model", "smollm2-135m", "--db", "<file>", "--out", "<tmp>/run-m"],
     {}),
    ("bench-env-rep-nan", ["bench", "matmul", "--shape", "13x13x13"], {"INFERTUNE_REP_MS": "nan"}),
    ("bench-env-warmup-arabic", ["bench", "matmul", "--shape", "13x13x13"], {"INFERTUNE_WARMUP_MS": ARABIC}),
    # profile kernel
    ("profile-kernel-out-is-file", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "<file>"], {}),
    ("profile-kernel-out-under-file", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                      "<file>/run"], {}),
    ("profile-kernel-out-dev-null", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "/dev/null/x"],
     {}),
    ("profile-kernel-out-newline", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                    f"<file>/{NL}"], {}),
    ("profile-kernel-out-dotdot", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                   "<tmp>/a/../../../../../../dev/null/x"], {}),
    ("profile-kernel-out-empty", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", ""], {}),
    ("profile-kernel-out-read-only", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "<ro>/run"],
     {}),
    ("profile-kernel-runs-env-is-file", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "<file>"}),
    ("profile-kernel-runs-env-dev-null", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "/dev/null/runs"}),
    ("profile-kernel-runs-env-read-only", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "<ro>/runs"}),
    ("profile-kernel-empty-variants", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--variants", ""],
     {}),
    ("profile-kernel-unknown-variant", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--variants",
                                        "fastest"], {}),
    ("profile-kernel-seed-huge", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--seed", BIG], {}),
    ("profile-kernel-arabic-shape", ["profile", "kernel", "matmul", "--shape", f"13x{ARABIC}x13"], {}),
    ("profile-kernel-env-min-reps-inf", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_MIN_REPS_CPU": "inf"}),
    ("profile-kernel-huge-shape", ["profile", "kernel", "matmul", "--shape", "100000000x100000000x100000000",
                                   "--dtype", "fp32"], {}),
    # profile model
    ("profile-model-unknown", ["profile", "model", "nosuch-model", "--out", "<tmp>/pm"], {}),
    ("profile-model-too-long-encoder", ["profile", "model", "minilm-l6", "--prompt-len", "10000"], {}),
    ("profile-model-too-long-decoder", ["profile", "model", "smollm2-synth", "--prompt-len", "8192"], {}),
    ("profile-model-prompt-len-zero", ["profile", "model", "smollm2-synth", "--prompt-len", "0"], {}),
    ("profile-model-prompt-len-arabic", ["profile", "model", "smollm2-synth", "--prompt-len", ARABIC], {}),
    ("profile-model-gen-nan", ["profile", "model", "smollm2-synth", "--gen", "nan"], {}),
    ("profile-model-bad-batch", ["profile", "model", "smollm2-synth", "--batch", "x"], {}),
    ("profile-model-huge-batch", ["profile", "model", "smollm2-synth", "--batch", "100000000000"], {}),
    ("profile-model-huge-encoder-batch", ["profile", "model", "minilm-l6", "--batch", "1,100000000000"], {}),
    ("profile-model-junk-path", ["profile", "model", "<tmp>/no-such-model-dir", "--out", "<tmp>/pm"], {}),
    ("profile-model-zero-batch", ["profile", "model", "smollm2-synth", "--batch", "0"], {}),
    ("profile-model-empty-variants", ["profile", "model", "smollm2-synth", "--variants", ""], {}),
    ("profile-model-unknown-variant", ["profile", "model", "smollm2-synth", "--variants", "fp64"], {}),
    ("profile-model-out-is-file", ["profile", "model", "smollm2-synth", "--out", "<file>"], {}),
    ("profile-model-runs-env-is-file", ["profile", "model", "smollm2-synth"], {"INFERTUNE_RUNS": "<file>"}),
    # generate
    ("generate-empty-variant", ["generate", "--variant", ""], {}),
    ("generate-unknown-variant", ["generate", "--variant", "fp64"], {}),
    ("generate-unknown-model", ["generate", "--model", "nosuch-model"], {}),
    ("generate-empty-model", ["generate", "--model", ""], {}),
    ("generate-gen-zero", ["generate", "--gen", "0"], {}),
    ("generate-max-new-tokens-negative", ["generate", "--max-new-tokens", "-1"], {}),
    ("generate-seed-huge", ["generate", "--seed", BIG], {}),
    ("generate-too-long", ["generate", "--model", "smollm2-synth", "--prompt-len", "9000", "--gen", "1"], {}),
    ("generate-plan-missing", ["generate", "--plan", "<tmp>/missing-plan.json"], {}),
    ("generate-empty-db", ["generate", "--db", ""], {}),
    # embed
    ("embed-no-text", ["embed"], {}),
    ("embed-empty-variant", ["embed", "--variant", "", "hello"], {}),
    ("embed-batch-zero", ["embed", "--batch", "0", "hello"], {}),
    ("embed-batch-size-arabic", ["embed", "--batch-size", ARABIC, "hello"], {}),
    ("embed-pairs-one-text", ["embed", "--pairs", "hello"], {}),
    ("embed-unknown-model", ["embed", "--model", "nosuch-model", "hello"], {}),
    # demo
    ("demo-out-is-file", ["demo", "--out", "<file>"], {}),
    ("demo-out-dev-null", ["demo", "--out", "/dev/null/x", "--json"], {}),
    ("demo-out-newline", ["demo", "--out", f"<file>/{NL}"], {}),
    ("demo-out-read-only", ["demo", "--out", "<ro>/demo"], {}),
    ("demo-budget-negative", ["demo", "--budget", "-1", "--out", "<tmp>/demo"], {}),
    ("demo-budget-nan", ["demo", "--budget", "nan", "--out", "<tmp>/demo"], {}),
    ("demo-budget-empty", ["demo", "--budget", "", "--out", "<tmp>/demo"], {}),
    # models
    ("models-unknown-subcommand", ["models", "bogus"], {}),
    ("models-fetch-no-name", ["models", "fetch"], {}),
    ("models-fetch-unknown", ["models", "fetch", "nosuch-model"], {}),
    ("models-fetch-json-unknown", ["models", "fetch", "--json", "smollm2-synth", "nosuch-model"], {}),
    # calibrate (the peaks go beside the database)
    ("calibrate-db-unknown-kind", ["calibrate", "--db", "foo://x"], {}),
    ("calibrate-db-under-file", ["calibrate", "--db", "<file>/t.db"], {}),
    ("calibrate-db-dev-null", ["calibrate", "--db", "/dev/null/t.db"], {}),
    # tuner
    ("tuner-compare-missing-replay", ["tuner", "compare", "--replay", "<tmp>/missing.json"], {}),
    ("tuner-compare-junk-replay", ["tuner", "compare", "--replay", "<file>"], {}),
    ("tuner-compare-zero-seeds", ["tuner", "compare", "--replay", "<file>", "--seeds", "0"], {}),
    ("tuner-compare-empty-samplers", ["tuner", "compare", "--replay", "<file>", "--samplers", ""], {}),
    # db
    ("db-show-unknown-kind", ["db", "show", "--db", "foo://x"], {}),
    ("db-show-mysql", ["db", "show", "--db", "mysql://u@h/d"], {}),
    ("db-show-missing", ["db", "show", "--db", "<tmp>/missing.db"], {}),
    ("db-show-not-a-database", ["db", "show", "--db", "<file>"], {}),
    ("db-show-unknown-kernel", ["db", "show", "--kernel", "nosuch", "--db", "<tmp>/t.db"], {}),
    ("db-export-out-is-file", ["db", "export", "--out", "<file>", "--db", "<tmp>/t.db"], {}),
    ("db-export-out-dev-null", ["db", "export", "--out", "/dev/null/x", "--db", "<tmp>/t.db"], {}),
    ("db-export-unknown-format", ["db", "export", "--format", "xml", "--out", "<tmp>", "--db", "<tmp>/t.db"], {}),
    ("db-import-missing", ["db", "import", "<tmp>/missing.json", "--db", "<tmp>/t.db"], {}),
    ("db-import-junk", ["db", "import", "<file>", "--db", "<tmp>/t.db"], {}),
    ("db-merge-unknown-kind", ["db", "merge", "foo://x", "--db", "<tmp>/t.db"], {}),
    ("db-prune-not-a-database", ["db", "prune", "--stale", "--db", "<file>"], {}),
    ("db-verify-unknown-kernel", ["db", "verify", "--kernel", "nosuch", "--db", "<tmp>/t.db"], {}),
    # report
    ("report-missing-dir", ["report", "<tmp>/missing-run"], {}),
    ("report-empty-dir", ["report", "<empty>"], {}),
    ("report-junk-run-json", ["report", "<junkrun>"], {}),
    ("report-list-run-json", ["report", "<listrun>"], {}),
    ("report-a-file", ["report", "<file>"], {}),
    ("report-newline-dir", ["report", f"<tmp>/{NL}"], {}),
    ("report-out-dev-null", ["report", "<empty>", "-o", "/dev/null/x.html"], {}),
    ("report-out-under-file", ["report", "<empty>", "-o", "<file>/x.md"], {}),
    ("report-out-unknown-suffix", ["report", "<empty>", "-o", "<tmp>/x.pdf"], {}),
    # autotune
    ("autotune-unknown-kernel", ["autotune", "nosuch", "--shape", "13x13x13"], {}),
    ("autotune-arabic-shape", ["autotune", "matmul", "--shape", f"{ARABIC}x13x13"], {}),
    ("autotune-trials-zero", ["autotune", "matmul", "--shape", "13x13x13", "--trials", "0"], {}),
    ("autotune-seed-huge", ["autotune", "matmul", "--shape", "13x13x13", "--seed", BIG], {}),
    ("autotune-seed-negative", ["autotune", "matmul", "--shape", "13x13x13", "--seed", "-1"], {}),
    ("autotune-empty-dtype", ["autotune", "matmul", "--shape", "13x13x13", "--dtype", ""], {}),
    ("autotune-unknown-sampler", ["autotune", "matmul", "--shape", "13x13x13", "--sampler", "bogus"], {}),
    ("autotune-db-unknown-kind", ["autotune", "matmul", "--shape", "13x13x13", "--db", "foo://x"], {}),
    ("autotune-db-mysql", ["autotune", "matmul", "--shape", "13x13x13", "--db", "mysql://u@h/d"], {}),
    ("autotune-db-is-dir", ["autotune", "matmul", "--shape", "13x13x13", "--db", "<empty>"], {}),
    ("autotune-db-dev-null", ["autotune", "matmul", "--shape", "13x13x13", "--db", "/dev/null/x.db"], {}),
    ("autotune-storage-bogus", ["autotune", "matmul", "--shape", "13x13x13", "--storage", "bogus://x"], {}),
    ("autotune-quant-unknown", ["autotune", "matmul_w4a16", "--shape", "13x64x64", "--quant", "int3"], {}),
    ("autotune-quant-plan-shape", ["autotune", "--model", "smollm2-synth", "--quant-plan", "--shape", "1x2x3"], {}),
    ("autotune-model-batch-empty-item", ["autotune", "--model", "smollm2-synth", "--batch", "1,,2"], {}),
    ("autotune-prompt-len-without-model", ["autotune", "matmul", "--shape", "13x13x13", "--prompt-len", "8"], {}),
    ("db-show-dev-null", ["db", "show", "--db", "/dev/null/x.db"], {}),
    ("report-nested-deep", ["report", "<deeprun>"], {}),
    ("autotune-out-dev-null", ["autotune", "matmul", "--shape", "13x13x13", "--out", "/dev/null/x"], {}),
    ("autotune-out-is-file", ["autotune", "matmul", "--shape", "13x13x13", "--out", "<file>"], {}),
    ("autotune-runs-env-is-file", ["autotune", "matmul", "--shape", "13x13x13"], {"INFERTUNE_RUNS": "<file>"},),
    ("autotune-huge-shape", ["autotune", "matmul", "--shape", "100000000x100000000x100000000", "--dtype", "fp32"],
     {}),
]

if not FP8_HERE:  # on a device without fp8 a kernel named explicitly that cannot run is an error
    CASES.append(("check-named-kernel-cannot-run-here", ["check", "matmul_fp8", "--dtype", "fp16"], {}))


def _param(case: Case):
    name, argv, env = case
    marks = []
    if "<ro>" in " ".join(argv + list(env.values())) and ROOT:
        marks.append(pytest.mark.skip(reason="root writes into read-only folders"))
    return pytest.param(argv, env, id=name, marks=marks)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """The placeholders' paths; the working directory, run folder and database under tmp_path,
    and timing settings that keep any unexpected real work short."""
    afile = tmp_path / "a-file"
    afile.write_text("not a folder, a database, a replay or a run\n")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    empty = tmp_path / "empty-run"
    empty.mkdir()
    junk = tmp_path / "junk-run"
    junk.mkdir()
    (junk / "run.json").write_text("{not json")
    listed = tmp_path / "list-run"
    listed.mkdir()
    (listed / "run.json").write_text("[]")
    deep = tmp_path / "deep-run"
    deep.mkdir()
    (deep / "run.json").write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    monkeypatch.chdir(tmp_path)
    for key, value in {"INFERTUNE_RUNS": str(tmp_path / "runs"), "INFERTUNE_DB": str(tmp_path / "default.db"),
                       "INFERTUNE_MODELS": str(tmp_path / "models"), "INFERTUNE_WARMUP_MS": "0",
                       "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "1", "INFERTUNE_MIN_REPS": "1"}.items():
        monkeypatch.setenv(key, value)
    yield {"<tmp>": str(tmp_path), "<file>": str(afile), "<ro>": str(ro), "<empty>": str(empty),
           "<junkrun>": str(junk), "<listrun>": str(listed), "<deeprun>": str(deep)}
    ro.chmod(0o755)


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace(key, value)
    return text


# A refusal takes well under a second; a case still running after this started real work (a
# bad input taken for a good one), which is the failure to report, not a suite that hangs.
CASE_LIMIT_S = 60


class StartedRealWork(Exception):
    pass


@contextlib.contextmanager
def _refused_within(seconds: float):
    def stop(signum, frame):
        raise StartedRealWork(f"still running after {seconds} s: the bad input was accepted")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("argv,env", [_param(c) for c in CASES])
def test_bad_invocation_is_one_line_and_exit_2(argv, env, places, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, _fill(value, places))
    args = [_fill(a, places) for a in argv]
    with pytest.raises(SystemExit) as exc, _refused_within(CASE_LIMIT_S):
        main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert exc.value.code == 2, (exc.value.code, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0][len("error: "):].strip(), err
    tmp = places["<tmp>"]
    assert not os.path.exists(os.path.join(tmp, "runs")) and not os.path.exists(os.path.join(tmp, "pm")), \
        "a refused invocation left a run directory behind"


def test_a_path_with_a_newline_is_quoted_on_one_line(places, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", f"{places['<file>']}/{NL}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert repr(f"{places['<file>']}/{NL}") in err  # quoted as Python writes it: \n as an escape


def test_the_run_directory_is_checked_before_any_work(places, monkeypatch, capsys):
    """An unwritable --out is refused before the model loads or a kernel runs."""
    from infertune import profiling

    def boom(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(profiling, "load_model", boom, raising=False)
    import runtime.loading

    monkeypatch.setattr(runtime.loading, "load_model", boom)
    with pytest.raises(SystemExit) as exc:
        main(["profile", "model", "smollm2-synth", "--out", "/dev/null/x"])
    assert exc.value.code == 2 and "'/dev/null' is a file" in capsys.readouterr().err
