"""`infertune profile serve` end to end against the fake OpenAI server: the run directory
(validated against the schema, figures consistent with requests.jsonl), the table at 80
columns, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from infertune.cli import main
from infertune.serve_profile import base_url, parse_concurrencies, parse_rates, parse_slo, profile_serving
from infertune.errors import UsageError
from reports.runfile import read_run

from .fake_openai_server import FakeServer, FakeSettings


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture
def server():
    with FakeServer(FakeSettings(style="vllm", token_delay=0.002, variant="fp32:torch",
                                 faults={2: "429", 5: "drop", 9: "malformed"})) as s:
        yield s


def _jsonl(path):
    return [json.loads(line) for line in (path / "requests.jsonl").read_text().splitlines()]


def test_rate_sweep_end_to_end(server, tmp_path, capsys, seed):
    out = tmp_path / "run"
    code, stdout, err = run_main(capsys, "profile", "serve", "--url", server.url + "/v1", "--model", "fake-model",
                                 "--rate", "20,50", "--requests", "12", "--input-len", "uniform:3,9",
                                 "--output-len", "uniform:3,8", "--slo", "ttft=1s,itl=500ms", "--seed", str(seed),
                                 "--out", str(out))
    assert code == 0, err
    assert f"run directory: {out}" in stdout and "rate/s" in stdout and "http_429 x1" in stdout
    # the run directory's line is the path whole (users copy it), however long
    assert all(len(line) <= 80 for line in stdout.splitlines() if not line.startswith("run directory: ")), stdout
    assert "level 1/2 (rate 20/s)" in err and "level 2/2 (rate 50/s)" in err
    run = read_run(out)  # validates against reports/run_schema.json
    s = run["serving"]
    assert run["kind"] == "profile-serve" and run["artifacts"] == ["requests.jsonl"]
    assert s["label"] == "fp32:torch" and s["server"] == {"variant": "fp32:torch", "owned_by": "fake"}
    assert s["url"] == server.url and s["mode"] == "rate" and s["seed"] == seed
    assert s["input_len"] == "uniform:3,9" and s["output_len"] == "uniform:3,8"
    assert s["slo"] == {"ttft_ms": 1000.0, "itl_ms": 500.0}
    assert [lv["rate"] for lv in s["levels"]] == [20.0, 50.0] and all(lv["concurrency"] is None for lv in s["levels"])
    rows = _jsonl(out)
    assert len(rows) == 24
    first = s["levels"][0]  # the faults strike after 2 tokens: every output is >= 3 (uniform:3,8)
    assert first["errors"] == {"disconnected": 1, "http_429": 1, "malformed": 1} and first["completed"] == 9
    assert s["levels"][1]["errors"] == {} and s["levels"][1]["completed"] == 12
    for i, level in enumerate(s["levels"]):
        mine = [r for r in rows if r["level"] == i]
        done = [r for r in mine if r["error"] is None]
        assert len(mine) == level["requests"] == 12 and len(done) == level["completed"]
        assert level["ttft_ms"]["p50"] == pytest.approx(np.percentile([r["ttft_s"] * 1e3 for r in done], 50),
                                                        abs=0.01)
        e2e = [(r["end_s"] - r["sent"]) * 1e3 for r in done]
        assert level["e2e_ms"]["p99"] == pytest.approx(np.percentile(e2e, 99), abs=0.01)
        assert level["output_token_throughput"] == pytest.approx(
            sum(r["completion_tokens"] for r in done) / level["duration_s"])
        # the drawn output lengths arrived: ignore_eos made the server produce exactly max_tokens
        assert [r["completion_tokens"] for r in done] == [len(r["token_times_s"]) for r in done]
        assert level["slo_attainment"] == pytest.approx(level["completed"] / 12)  # generous SLOs: every completed
    # the same request i at both levels: same prompt and output length
    sent = server.settings.seen
    assert sent[0]["prompt"] == sent[12]["prompt"] and sent[0]["max_tokens"] == sent[12]["max_tokens"]
    assert all(20 <= t < 256 for body in sent for t in body["prompt"])
    assert {len(body["prompt"]) for body in sent} <= set(range(3, 10))


def test_concurrency_sweep_chat_without_usage(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"first prompt here"\n\n{"prompt": "second one"}\n{"text": "a third prompt"}\n')
    with FakeServer(FakeSettings(style="trtllm")) as server:
        code, stdout, err = run_main(capsys, "profile", "serve", "--url", server.url, "--model", "fake-model",
                                     "--endpoint", "chat", "--concurrency", "1,3", "--requests", "6",
                                     "--prompts", str(prompts), "--output-len", "4", "--label", "mine",
                                     "--out", str(tmp_path / "run"))
        seen = [m["content"] for body in server.settings.seen for m in body["messages"]]
    assert code == 0, err
    assert set(seen) == {"first prompt here", "second one", "a third prompt"}
    run = read_run(tmp_path / "run")
    s = run["serving"]
    assert s["mode"] == "concurrency" and [lv["concurrency"] for lv in s["levels"]] == [1, 3]
    assert s["label"] == "mine" and s["server"] == {"owned_by": "fake"} and s["input_len"] == "prompts:p.jsonl"
    assert s["levels"][0]["goodput"] is None and s["slo"] == {}
    # trtllm style sends no usage and two tokens a chunk; no tokenizer for this name: chunks counted
    assert all(r["completion_tokens"] == 2 for r in _jsonl(tmp_path / "run"))
    assert any("counted one per streamed chunk" in n for n in run["notes"])


def test_embeddings_and_duration(tmp_path, capsys):
    with FakeServer() as server:
        path = profile_serving(server.url, "fake-model", endpoint="embeddings", rates=[30.0], duration=0.4,
                               input_len="5", slo="e2e=2s", out=tmp_path / "emb")
    level = read_run(path)["serving"]["levels"][0]
    assert level["ttft_ms"] is None and level["itl_ms"] is None and level["tpot_ms"] is None
    assert level["e2e_ms"]["p50"] > 0 and level["output_token_throughput"] == 0
    assert level["input_token_throughput"] == pytest.approx(5 * level["completed"] / level["duration_s"])
    assert 1 <= level["requests"] <= 40 and level["slo_attainment"] == 1.0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = run_main(capsys, "profile", "serve", "--url", f"http://127.0.0.1:{_free_port()}", "--model", "m",
                              "--out", str(tmp_path / "never"))
    assert code == 2 and err.startswith("error: cannot reach http://127.0.0.1:") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "never").exists()


def test_wrong_model_names_the_served_ones(server, tmp_path, capsys):
    code, out, err = run_main(capsys, "profile", "serve", "--url", server.url, "--model", "llama-9000",
                              "--out", str(tmp_path / "never"))
    assert code == 2 and err.count("\n") == 1
    assert "'llama-9000' is not served" in err and "it serves: fake-model" in err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("flags,fragment", [
    (["--slo", "ttft=fast"], "--slo"), (["--slo", "speed=1ms"], "--slo"), (["--slo", "ttft=-1ms"], "> 0"),
    (["--slo", "ttft=1ms,ttft=2ms"], "twice"), (["--rate", "1,,2"], "--rate"), (["--rate", "0"], "--rate"),
    (["--rate", "inf"], "--rate"), (["--rate", "abc"], "--rate"), (["--concurrency", "0"], "--concurrency"),
    (["--concurrency", "2.5"], "--concurrency"), (["--rate", "1", "--concurrency", "2"], "not both"),
    (["--requests", "5", "--duration", "2"], "not both"), (["--duration", "-1"], "--duration"),
    (["--input-len", "uniform:9,2"], "--input-len"), (["--output-len", "zipf:2"], "--output-len"),
    (["--input-len", "0"], "--input-len"), (["--endpoint", "images"], "--endpoint"),
    (["--endpoint", "embeddings", "--slo", "ttft=1s"], "e2e"), (["--timeout", "0"], "--timeout"),
    (["--url", "ftp://x"], "--url"), (["--url", "http://127.0.0.1:99999"], "--url"),
    (["--prompts", "/nonexistent/file.txt"], "file.txt"),
])
def test_bad_input_is_one_line_exit_2(flags, fragment, tmp_path, capsys):
    argv = ["profile", "serve", "--url", "http://127.0.0.1:9", "--model", "m", "--out", str(tmp_path / "never")]
    argv += flags  # later flags win: --url given twice takes the second
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in err and not (tmp_path / "never").exists()


def test_parsers():
    assert parse_slo("ttft=200ms, ITL=0.05s,tpot=30,e2e=2s") == {"ttft_ms": 200.0, "itl_ms": 50.0, "tpot_ms": 30.0,
                                                                 "e2e_ms": 2000.0}
    assert parse_rates("1, 2.5,8") == [1.0, 2.5, 8.0] and parse_concurrencies("1,4,16") == [1, 4, 16]
    assert base_url("http://h:8000/v1/") == "http://h:8000" and base_url("https://h/api/v1") == "https://h/api"
    with pytest.raises(UsageError):
        parse_concurrencies("9" * 5000)


def test_a_tokenizer_counts_tokens_when_the_server_reports_none(tmp_path):
    with FakeServer(FakeSettings(style="trtllm")) as server:
        path = profile_serving(server.url, "fake-model", endpoint="completions", concurrencies=[2], requests=4,
                               input_len="3", output_len="7", out=tmp_path / "run",
                               count_tokens=lambda text: len(text.split()))
    run = read_run(path)
    rows = _jsonl(path)
    # 7 tokens in 4 chunks of up to two: the tokenizer gives 7, counting chunks would give 4
    assert all(r["completion_tokens"] == 7 and len(r["token_times_s"]) == 4 for r in rows)
    assert any("counted with the model's tokenizer" in n for n in run["notes"])
    level = run["serving"]["levels"][0]
    assert level["output_token_throughput"] == pytest.approx(28 / level["duration_s"])
