"""Bad invocations of every subcommand: exit code 2 and exactly one line `error: ...` on
stderr, never a traceback (issue 13). Each case runs in-process through the console script's
entry point (`infertune.cli.main`) and is refused before any real work starts.

A case is (id, argv, environment overrides, owner). Placeholders in argv and the environment
are replaced by paths under the test's tmp_path: <tmp> the folder itself, <file> a plain
file, <ro> a read-only folder, <empty> an empty folder, <junkrun> a run directory whose
run.json is not JSON, <listrun> one whose run.json is a JSON list. Cases of commands owned
by other parts of issue 13 carry `owner` and are xfail(strict=False) until those land.
"""

from __future__ import annotations

import os

import pytest

from infertune.cli import main
from kernels.device import current_device, dtype_unsupported_reason

BIG = str(10**30)
ARABIC = "\u0661\u0662"  # '١٢': int() reads it as 12
NL = "new\nline"
FP8_HERE = dtype_unsupported_reason("fp8", current_device()) is None
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders

Case = tuple[str, list[str], dict[str, str], str | None]

CASES: list[Case] = [
    # the top level
    ("unknown-command", ["nosuch"], {}, None),
    ("unknown-global-option", ["--bogus"], {}, None),
    # env, kernels
    ("env-unknown-option", ["env", "--bogus"], {}, None),
    ("env-extra-argument", ["env", "extra"], {}, None),
    ("kernels-extra-argument", ["kernels", "--json", "extra"], {}, None),
    # check
    ("check-unknown-kernel", ["check", "nosuch"], {}, None),
    ("check-empty-kernel", ["check", ""], {}, None),
    ("check-empty-dtype", ["check", "matmul", "--dtype", ""], {}, None),
    ("check-unknown-dtype", ["check", "--dtype", "fp64"], {}, None),
    ("check-dtype-kernel-lacks", ["check", "matmul_fp8", "--dtype", "fp32"], {}, None),
    ("check-seed-huge", ["check", "matmul", "--seed", BIG], {}, None),
    ("check-seed-2-32", ["check", "matmul", "--seed", str(2**32)], {}, None),
    ("check-seed-negative", ["check", "matmul", "--seed", "-1"], {}, None),
    ("check-seed-nan", ["check", "matmul", "--seed", "nan"], {}, None),
    ("check-seed-arabic", ["check", "matmul", "--seed", ARABIC], {}, None),
    # bench
    ("bench-unknown-kernel", ["bench", "nosuch", "--shape", "13x13x13"], {}, None),
    ("bench-arabic-shape", ["bench", "matmul", "--shape", f"{ARABIC}x13x13"], {}, None),
    ("bench-arabic-named-shape", ["bench", "matmul", "--shape", f"M={ARABIC},N=13,K=13"], {}, None),
    ("bench-empty-shape", ["bench", "matmul", "--shape", ""], {}, None),
    ("bench-short-shape", ["bench", "matmul", "--shape", "13x13"], {}, None),
    ("bench-negative-shape", ["bench", "matmul", "--shape", "-1x13x13"], {}, None),
    ("bench-zero-shape", ["bench", "matmul", "--shape", "0x13x13"], {}, None),
    ("bench-huge-shape", ["bench", "matmul", "--shape", "100000000x100000000x100000000", "--dtype", "fp32"], {}, None),
    ("bench-overflowing-shape", ["bench", "rmsnorm", "--shape", f"{BIG}x{BIG}", "--dtype", "fp32"], {}, None),
    ("bench-seed-huge", ["bench", "matmul", "--shape", "13x13x13", "--seed", BIG], {}, None),
    ("bench-seed-negative", ["bench", "matmul", "--shape", "13x13x13", "--seed", "-1"], {}, None),
    ("bench-empty-dtype", ["bench", "matmul", "--shape", "13x13x13", "--dtype", ""], {}, None),
    ("bench-unknown-dtype", ["bench", "matmul", "--shape", "13x13x13", "--dtype", "fp64"], {}, None),
    ("bench-empty-config", ["bench", "matmul", "--shape", "13x13x13", "--config", ""], {}, None),
    ("bench-bad-config", ["bench", "matmul", "--shape", "13x13x13", "--config", "BLOCK_M=abc"], {}, None),
    ("bench-unknown-param", ["bench", "matmul", "--shape", "13x13x13", "--config", "NOPE=1"], {}, None),
    ("bench-bad-opt", ["bench", "matmul", "--shape", "13x13x13", "--opt", "bias"], {}, None),
    ("bench-config-and-db", ["bench", "matmul", "--shape", "13x13x13", "--config", "BLOCK_M=16", "--db",
                             "<tmp>/t.db"], {}, None),
    ("bench-db-unknown-kind", ["bench", "matmul", "--shape", "13x13x13", "--db", "foo://x"], {}, None),
    ("bench-db-mysql", ["bench", "matmul", "--shape", "13x13x13", "--db", "mysql://u@h/d"], {}, None),
    ("bench-db-missing", ["bench", "matmul", "--shape", "13x13x13", "--db", "<tmp>/missing.db"], {}, None),
    ("bench-db-not-a-database", ["bench", "matmul", "--shape", "13x13x13", "--db", "<file>"], {}, None),
    ("bench-db-empty", ["bench", "matmul", "--shape", "13x13x13", "--db", ""], {}, None),
    # a --db the user names must open: never a quiet fall back to the heuristic
    ("generate-db-missing", ["generate", "--prompt", "hi", "--db", "<tmp>/missing.db"], {}, None),
    ("embed-db-missing", ["embed", "hello", "--db", "<tmp>/missing.db"], {}, None),
    ("profile-kernel-db-missing", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--db", "<tmp>/missing.db",
                                   "--out", "<tmp>/run-k"], {}, None),
    ("profile-model-db-missing", ["profile", "model", "smollm2-135m", "--db", "<file>", "--out", "<tmp>/run-m"],
     {}, None),
    ("bench-env-rep-nan", ["bench", "matmul", "--shape", "13x13x13"], {"INFERTUNE_REP_MS": "nan"}, None),
    ("bench-env-warmup-arabic", ["bench", "matmul", "--shape", "13x13x13"], {"INFERTUNE_WARMUP_MS": ARABIC}, None),
    # profile kernel
    ("profile-kernel-out-is-file", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "<file>"], {}, None),
    ("profile-kernel-out-under-file", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                      "<file>/run"], {}, None),
    ("profile-kernel-out-dev-null", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "/dev/null/x"],
     {}, None),
    ("profile-kernel-out-newline", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                    f"<file>/{NL}"], {}, None),
    ("profile-kernel-out-dotdot", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out",
                                   "<tmp>/a/../../../../../../dev/null/x"], {}, None),
    ("profile-kernel-out-empty", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", ""], {}, None),
    ("profile-kernel-out-read-only", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--out", "<ro>/run"],
     {}, None),
    ("profile-kernel-runs-env-is-file", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "<file>"}, None),
    ("profile-kernel-runs-env-dev-null", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "/dev/null/runs"}, None),
    ("profile-kernel-runs-env-read-only", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_RUNS": "<ro>/runs"}, None),
    ("profile-kernel-empty-variants", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--variants", ""],
     {}, None),
    ("profile-kernel-unknown-variant", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--variants",
                                        "fastest"], {}, None),
    ("profile-kernel-seed-huge", ["profile", "kernel", "matmul", "--shape", "13x13x13", "--seed", BIG], {}, None),
    ("profile-kernel-arabic-shape", ["profile", "kernel", "matmul", "--shape", f"13x{ARABIC}x13"], {}, None),
    ("profile-kernel-env-min-reps-inf", ["profile", "kernel", "matmul", "--shape", "13x13x13"],
     {"INFERTUNE_MIN_REPS_CPU": "inf"}, None),
    ("profile-kernel-huge-shape", ["profile", "kernel", "matmul", "--shape", "100000000x100000000x100000000",
                                   "--dtype", "fp32"], {}, None),
    # profile model
    ("profile-model-unknown", ["profile", "model", "nosuch-model", "--out", "<tmp>/pm"], {}, None),
    ("profile-model-too-long-encoder", ["profile", "model", "minilm-l6", "--prompt-len", "10000"], {}, None),
    ("profile-model-too-long-decoder", ["profile", "model", "smollm2-synth", "--prompt-len", "8192"], {}, None),
    ("profile-model-prompt-len-zero", ["profile", "model", "smollm2-synth", "--prompt-len", "0"], {}, None),
    ("profile-model-prompt-len-arabic", ["profile", "model", "smollm2-synth", "--prompt-len", ARABIC], {}, None),
    ("profile-model-gen-nan", ["profile", "model", "smollm2-synth", "--gen", "nan"], {}, None),
    ("profile-model-bad-batch", ["profile", "model", "smollm2-synth", "--batch", "x"], {}, None),
    ("profile-model-huge-batch", ["profile", "model", "smollm2-synth", "--batch", "100000000000"], {}, None),
    ("profile-model-huge-encoder-batch", ["profile", "model", "minilm-l6", "--batch", "1,100000000000"], {}, None),
    ("profile-model-junk-path", ["profile", "model", "<tmp>/no-such-model-dir", "--out", "<tmp>/pm"], {}, None),
    ("profile-model-zero-batch", ["profile", "model", "smollm2-synth", "--batch", "0"], {}, None),
    ("profile-model-empty-variants", ["profile", "model", "smollm2-synth", "--variants", ""], {}, None),
    ("profile-model-unknown-variant", ["profile", "model", "smollm2-synth", "--variants", "fp64"], {}, None),
    ("profile-model-out-is-file", ["profile", "model", "smollm2-synth", "--out", "<file>"], {}, None),
    ("profile-model-runs-env-is-file", ["profile", "model", "smollm2-synth"], {"INFERTUNE_RUNS": "<file>"}, None),
    # generate
    ("generate-empty-variant", ["generate", "--variant", ""], {}, None),
    ("generate-unknown-variant", ["generate", "--variant", "fp64"], {}, None),
    ("generate-unknown-model", ["generate", "--model", "nosuch-model"], {}, None),
    ("generate-empty-model", ["generate", "--model", ""], {}, None),
    ("generate-gen-zero", ["generate", "--gen", "0"], {}, None),
    ("generate-max-new-tokens-negative", ["generate", "--max-new-tokens", "-1"], {}, None),
    ("generate-seed-huge", ["generate", "--seed", BIG], {}, None),
    ("generate-too-long", ["generate", "--model", "smollm2-synth", "--prompt-len", "9000", "--gen", "1"], {}, None),
    ("generate-plan-missing", ["generate", "--plan", "<tmp>/missing-plan.json"], {}, None),
    ("generate-empty-db", ["generate", "--db", ""], {}, None),
    # embed
    ("embed-no-text", ["embed"], {}, None),
    ("embed-empty-variant", ["embed", "--variant", "", "hello"], {}, None),
    ("embed-batch-zero", ["embed", "--batch", "0", "hello"], {}, None),
    ("embed-batch-size-arabic", ["embed", "--batch-size", ARABIC, "hello"], {}, None),
    ("embed-pairs-one-text", ["embed", "--pairs", "hello"], {}, None),
    ("embed-unknown-model", ["embed", "--model", "nosuch-model", "hello"], {}, None),
    # demo
    ("demo-out-is-file", ["demo", "--out", "<file>"], {}, None),
    ("demo-out-dev-null", ["demo", "--out", "/dev/null/x", "--json"], {}, None),
    ("demo-out-newline", ["demo", "--out", f"<file>/{NL}"], {}, None),
    ("demo-out-read-only", ["demo", "--out", "<ro>/demo"], {}, None),
    ("demo-budget-negative", ["demo", "--budget", "-1", "--out", "<tmp>/demo"], {}, None),
    ("demo-budget-nan", ["demo", "--budget", "nan", "--out", "<tmp>/demo"], {}, None),
    ("demo-budget-empty", ["demo", "--budget", "", "--out", "<tmp>/demo"], {}, None),
    # models
    ("models-unknown-subcommand", ["models", "bogus"], {}, None),
    ("models-fetch-no-name", ["models", "fetch"], {}, None),
    ("models-fetch-unknown", ["models", "fetch", "nosuch-model"], {}, None),
    ("models-fetch-json-unknown", ["models", "fetch", "--json", "smollm2-synth", "nosuch-model"], {}, None),
    # calibrate (the peaks go beside the database)
    ("calibrate-db-unknown-kind", ["calibrate", "--db", "foo://x"], {}, None),
    ("calibrate-db-under-file", ["calibrate", "--db", "<file>/t.db"], {}, None),
    ("calibrate-db-dev-null", ["calibrate", "--db", "/dev/null/t.db"], {}, None),
    # tuner
    ("tuner-compare-missing-replay", ["tuner", "compare", "--replay", "<tmp>/missing.json"], {}, None),
    ("tuner-compare-junk-replay", ["tuner", "compare", "--replay", "<file>"], {}, None),
    ("tuner-compare-zero-seeds", ["tuner", "compare", "--replay", "<file>", "--seeds", "0"], {}, None),
    ("tuner-compare-empty-samplers", ["tuner", "compare", "--replay", "<file>", "--samplers", ""], {}, None),
    # db
    ("db-show-unknown-kind", ["db", "show", "--db", "foo://x"], {}, "db"),
    ("db-show-mysql", ["db", "show", "--db", "mysql://u@h/d"], {}, "db"),
    ("db-show-missing", ["db", "show", "--db", "<tmp>/missing.db"], {}, "db"),
    ("db-show-not-a-database", ["db", "show", "--db", "<file>"], {}, "db"),
    ("db-show-unknown-kernel", ["db", "show", "--kernel", "nosuch", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-export-out-is-file", ["db", "export", "--out", "<file>", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-export-out-dev-null", ["db", "export", "--out", "/dev/null/x", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-export-unknown-format", ["db", "export", "--format", "xml", "--out", "<tmp>", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-import-missing", ["db", "import", "<tmp>/missing.json", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-import-junk", ["db", "import", "<file>", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-merge-unknown-kind", ["db", "merge", "foo://x", "--db", "<tmp>/t.db"], {}, "db"),
    ("db-prune-not-a-database", ["db", "prune", "--stale", "--db", "<file>"], {}, "db"),
    ("db-verify-unknown-kernel", ["db", "verify", "--kernel", "nosuch", "--db", "<tmp>/t.db"], {}, "db"),
    # report
    ("report-missing-dir", ["report", "<tmp>/missing-run"], {}, "report"),
    ("report-empty-dir", ["report", "<empty>"], {}, "report"),
    ("report-junk-run-json", ["report", "<junkrun>"], {}, "report"),
    ("report-list-run-json", ["report", "<listrun>"], {}, "report"),
    ("report-a-file", ["report", "<file>"], {}, "report"),
    ("report-newline-dir", ["report", f"<tmp>/{NL}"], {}, "report"),
    ("report-out-dev-null", ["report", "<empty>", "-o", "/dev/null/x.html"], {}, "report"),
    ("report-out-under-file", ["report", "<empty>", "-o", "<file>/x.md"], {}, "report"),
    ("report-out-unknown-suffix", ["report", "<empty>", "-o", "<tmp>/x.pdf"], {}, "report"),
    # autotune
    ("autotune-unknown-kernel", ["autotune", "nosuch", "--shape", "13x13x13"], {}, "autotune"),
    ("autotune-arabic-shape", ["autotune", "matmul", "--shape", f"{ARABIC}x13x13"], {}, "autotune"),
    ("autotune-trials-zero", ["autotune", "matmul", "--shape", "13x13x13", "--trials", "0"], {}, "autotune"),
    ("autotune-seed-huge", ["autotune", "matmul", "--shape", "13x13x13", "--seed", BIG], {}, "autotune"),
    ("autotune-seed-negative", ["autotune", "matmul", "--shape", "13x13x13", "--seed", "-1"], {}, "autotune"),
    ("autotune-empty-dtype", ["autotune", "matmul", "--shape", "13x13x13", "--dtype", ""], {}, "autotune"),
    ("autotune-unknown-sampler", ["autotune", "matmul", "--shape", "13x13x13", "--sampler", "bogus"], {}, "autotune"),
    ("autotune-db-unknown-kind", ["autotune", "matmul", "--shape", "13x13x13", "--db", "foo://x"], {}, "autotune"),
    ("autotune-db-mysql", ["autotune", "matmul", "--shape", "13x13x13", "--db", "mysql://u@h/d"], {}, "autotune"),
    ("autotune-out-dev-null", ["autotune", "matmul", "--shape", "13x13x13", "--out", "/dev/null/x"], {}, "autotune"),
    ("autotune-out-is-file", ["autotune", "matmul", "--shape", "13x13x13", "--out", "<file>"], {}, "autotune"),
    ("autotune-runs-env-is-file", ["autotune", "matmul", "--shape", "13x13x13"], {"INFERTUNE_RUNS": "<file>"},
     "autotune"),
    ("autotune-huge-shape", ["autotune", "matmul", "--shape", "100000000x100000000x100000000", "--dtype", "fp32"],
     {}, "autotune"),
]

if not FP8_HERE:  # on a device without fp8 a kernel named explicitly that cannot run is an error
    CASES.append(("check-named-kernel-cannot-run-here", ["check", "matmul_fp8", "--dtype", "fp16"], {}, None))


def _param(case: Case):
    name, argv, env, owner = case
    marks = []
    if owner is not None:
        marks.append(pytest.mark.xfail(strict=False, reason=f"owner: {owner}"))
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
    monkeypatch.chdir(tmp_path)
    for key, value in {"INFERTUNE_RUNS": str(tmp_path / "runs"), "INFERTUNE_DB": str(tmp_path / "default.db"),
                       "INFERTUNE_MODELS": str(tmp_path / "models"), "INFERTUNE_WARMUP_MS": "0",
                       "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "1", "INFERTUNE_MIN_REPS": "1"}.items():
        monkeypatch.setenv(key, value)
    yield {"<tmp>": str(tmp_path), "<file>": str(afile), "<ro>": str(ro), "<empty>": str(empty),
           "<junkrun>": str(junk), "<listrun>": str(listed)}
    ro.chmod(0o755)


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace(key, value)
    return text


@pytest.mark.parametrize("argv,env", [_param(c) for c in CASES])
def test_bad_invocation_is_one_line_and_exit_2(argv, env, places, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, _fill(value, places))
    args = [_fill(a, places) for a in argv]
    with pytest.raises(SystemExit) as exc:
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
