"""`infertune autotune --model NAME --batch ... --prompt-len ...`: the model's launch list becomes
the tuning jobs, each tuned and stored; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infertune.cli import app, main
from infertune.errors import UsageError
from infertune.model_autotune import model_problems, parse_sizes
from runtime import get_preset, kernel_launches
from tuner.database import open_database


def test_problems_are_the_union_of_the_launches_at_each_batch():
    jobs = model_problems("smollm2-135m", batches=[1, 8], seq=32, gen=16, dtype="fp16", quant=None)
    config = get_preset("smollm2-135m").config
    expected = set()
    for b in (1, 8):
        expected |= {(launch.kernel, launch.problem()) for launch in
                     kernel_launches(config, batch=b, seq=32, dtype="fp16", gen=16)}
    got = [(spec.name, problem) for spec, problem in jobs]
    assert len(got) == len(set(got)) and set(got) == expected
    ms = {p["M"] for spec, p in jobs if spec.name == "matmul"}
    assert {1, 8, 32, 8 * 32} <= ms  # decode at M=batch, prefill at M=batch*seq


def test_quant_and_kernel_filter():
    jobs = model_problems("llama-3-8b", batches=[4], seq=16, gen=8, dtype="bf16", quant="int4-g128",
                          kernel="matmul_w4a16")
    assert jobs and all(spec.name == "matmul_w4a16" and p.opt("quant") == "int4-g128" for spec, p in jobs)
    assert {(p["N"], p["K"]) for _, p in jobs} == {(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)}
    with pytest.raises(UsageError, match="does not launch attention_decode"):
        model_problems("minilm-l6", batches=[1], seq=16, gen=0, dtype="fp16", quant=None, kernel="attention_decode")


@pytest.mark.parametrize("text", ["", "0", "1,x", "-4", "8,,", "1,,2", ",8", "\u0661\u0662", "1.5"])
def test_parse_sizes_refuses(text):
    with pytest.raises(UsageError, match="malformed --batch"):
        parse_sizes(text, "--batch")


def test_parse_sizes_reads_a_list():
    assert parse_sizes(" 1, 8,64,8", "--batch") == [1, 8, 64]


def test_cli_tunes_and_stores_every_problem_of_the_model(tmp_path, monkeypatch):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "t.db"
    res = CliRunner().invoke(app, ["autotune", "rmsnorm", "--model", "smollm2-135m", "--batch", "1,3",
                                   "--prompt-len", "5",
                                   "--gen", "4", "--dtype", "fp16", "--trials", "2", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    want = {spec.shape_key(p) for spec, p in model_problems("smollm2-135m", batches=[1, 3], seq=5, gen=4,
                                                             dtype="fp16", quant=None, kernel="rmsnorm")}
    assert data["model"] == "smollm2-135m" and {r["problem"] for r in data["results"]} == want == {
        "M=1,N=576|fp16", "M=5,N=576|fp16", "M=3,N=576|fp16", "M=15,N=576|fp16"}
    with open_database(str(db)) as database:
        assert {r.problem_key for r in database.records()} == want


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt-5"], "unknown model 'gpt-5'"),
    (["--batch", "1,8"], "give --model NAME too"),
    (["--model", "smollm2-135m", "--batch", "1,zero"], "malformed --batch"),
    (["--model", "smollm2-135m", "--shape", "4x4x4"], "leave out --shape"),
    (["--model", "smollm2-135m", "--seq", "9000"], "exceeds the model's 8192 positions"),
    (["nokernel", "--model", "smollm2-135m"], "unknown kernel"),
    ([], "give a KERNEL"),
    (["matmul", "--shape", "4x4x4", "--cuda-graph"], "--cuda-graph needs a GPU"),
])
def test_cli_bad_model_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["autotune", *args, "--db", str(tmp_path / "t.db")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
