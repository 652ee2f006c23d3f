"""`infertune generate` and `infertune embed` end to end: the real models on the torch
backend, a tiny local model on the triton backend reading a tuned database (the configs
it stored are the ones launched, and the report says so), and bad input as one line with
exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from infertune.cli import app, main
from kernels.device import current_device
from runtime.generate import generate
from runtime.loading import load_model
from runtime.variant import parse_variant

from .models import minilm_dir, smollm2_path

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    # 2 CPUs shared with other test workers: torch's own threads only contend (helper note
    # in tests/test_llama.py: 3.3 s instead of 15 ms for a tiny model's generation).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_generate_smollm2_json_is_the_models_greedy_output(tmp_path, monkeypatch):
    smollm2_path()
    # The default database (INFERTUNE_DB) may be absent: heuristic configs, no error. A --db the
    # user names must exist (tests/test_cli_fuzz.py: generate-db-missing).
    monkeypatch.setenv("INFERTUNE_DB", str(tmp_path / "none.db"))
    res = runner.invoke(app, ["generate", "--prompt", "What is 2 + 2?", "--max-new-tokens", "6", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["model"] == "smollm2-135m" and data["variant"] == "fp32:torch"
    out = data["outputs"][0]
    assert 1 <= len(out["tokens"]) <= 6 and out["text"].strip()
    assert data["prefill"]["tokens"] > 6 and data["decode"]["tokens_per_s"] > 0
    assert data["configs"]["backend"] == "torch"
    # the same tokens as the runtime's greedy generation on the chat-templated prompt
    loaded = load_model("smollm2-135m", parse_variant("fp32:torch", gpu=False), current_device())
    text = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}])
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    again = generate(loaded.model, [ids], 6, eos_ids=loaded.tokenizer.eos_ids)
    assert again.tokens[0] == out["tokens"]


def test_embed_pairs_ranks_the_matching_document_first():
    minilm_dir()
    res = runner.invoke(app, ["embed", "--pairs", "--json", "how do I bake bread",
                              "The stock market fell sharply today.", "Mix flour, water and yeast, then bake."])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["ranking"][0]["document"].startswith("Mix flour") and data["dimensions"] == 384
    plain = json.loads(runner.invoke(app, ["embed", "--json", "a", "b c"]).stdout)
    for row in plain["embeddings"]:
        assert abs(sum(x * x for x in row["vector"]) - 1.0) < 1e-5  # L2-normalized


def _tiny_llama_dir(path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=37, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                   rope_theta=10000.0, tie_word_embeddings=False)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def test_generate_triton_backend_launches_the_tuned_configs(tmp_path, monkeypatch):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    model_dir = _tiny_llama_dir(tmp_path / "tiny")
    db = str(tmp_path / "tuned.db")
    # tune the prefill qkv projection exactly: M = 5 tokens, N = (2 + 2*1) * 16, K = 32
    tuned = runner.invoke(app, ["autotune", "matmul", "--shape", "5x64x32", "--dtype", "fp32", "--trials", "2",
                                "--db", db, "--json"])
    assert tuned.exit_code == 0, tuned.output
    best = json.loads(tuned.stdout)["results"][0]["best_config"]
    res = runner.invoke(app, ["generate", "--model", str(model_dir), "--variant", "fp32:triton", "--prompt-len", "5",
                              "--max-new-tokens", "2", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rows = {(r["kernel"], r["problem"]): r for r in data["configs"]["launches"]}
    row = rows[("matmul", "M=5,N=64,K=32|fp32|bias=0")]
    assert row["source"] == "database" and row["config"] == ",".join(f"{k}={v}" for k, v in sorted(best.items()))
    assert data["configs"]["unplanned"] == 0 and data["configs"]["by_source"]["database"] >= 1
    # decode-time qkv (M=1) was not tuned: the nearest bucket of the same N, K answers it
    assert rows[("matmul", "M=1,N=64,K=32|fp32|bias=0")]["source"] == "nearest"
    assert len(data["outputs"][0]["tokens"]) == 2
    # the same model with the database off: every config is the heuristic
    off = json.loads(runner.invoke(app, ["generate", "--model", str(model_dir), "--variant", "fp32:triton-default",
                                         "--prompt-len", "5", "--max-new-tokens", "2", "--json"]).stdout)
    assert set(off["configs"]["by_source"]) == {"heuristic"}
    assert off["outputs"][0]["tokens"] == data["outputs"][0]["tokens"]


@pytest.mark.parametrize("args, message", [
    (["generate", "--model", "nope", "--prompt", "x"], "unknown model 'nope'"),
    (["generate", "--variant", "bf16+w3", "--prompt", "x"], "malformed variant"),
    (["generate", "--variant", "bf16+fp8", "--prompt", "x"], "cannot run here"),
    (["generate", "--variant", "fp32+cg", "--prompt", "x"], "CUDA graphs need a GPU"),
    (["generate", "--model", "llama-3-8b"], "GiB"),
    (["generate", "--prompt", "word " * 9000, "--max-new-tokens", "4"], "exceeds the model's context"),
    (["generate", "--plan", "/nonexistent/plan.json", "--prompt", "x"], "does not exist"),
    (["generate", "--model", "minilm-l6", "--prompt", "x"], "is an encoder"),
    (["embed", "--model", "smollm2-135m", "x"], "is a decoder"),
    (["embed", "--pairs", "only a query"], "--pairs needs a query"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    if "minilm-l6" in args or args[0] == "embed":
        minilm_dir()
    if "smollm2-135m" in args or (args[0] == "generate" and "--model" not in args):
        smollm2_path()
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_gen_and_max_new_tokens_are_one_option_and_the_seed_defaults_to_0(tmp_path):
    """--gen is the lead's name for tokens generated per sequence; --max-new-tokens stays as
    its alias. Sampling without --seed uses seed 0 (was a fresh random seed): reproducible."""
    model_dir = _tiny_llama_dir(tmp_path / "tiny")
    base = ["generate", "--model", str(model_dir), "--variant", "fp32:torch", "--prompt-len", "4",
            "--temperature", "1.0", "--json"]
    runs = [runner.invoke(app, base + [flag, "3"]) for flag in ("--gen", "--max-new-tokens")]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["seed"] == 0 and second["seed"] == 0
    assert len(first["outputs"][0]["tokens"]) == 3 and first["outputs"] == second["outputs"]
    other = json.loads(runner.invoke(app, base + ["--gen", "3", "--seed", "1"]).stdout)
    assert other["seed"] == 1


def test_embed_batch_and_batch_size_are_one_option():
    minilm_dir()
    runs = [runner.invoke(app, ["embed", "--json", flag, "1", "a", "b c"]) for flag in ("--batch", "--batch-size")]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    first, second = (json.loads(r.stdout)["embeddings"] for r in runs)
    assert [row["text"] for row in first] == ["a", "b c"]
    for a, b in zip(first, second):
        assert max(abs(x - y) for x, y in zip(a["vector"], b["vector"])) < 1e-6
