"""The quantization plan search: pure block/plan/front functions, a search on a tiny model
(the front is non-dominated, the pick respects the perplexity bound, every layer is named),
and the CLI on the real SmolLM2 writing a plan that `generate --plan` runs."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from infertune.cli import app
from infertune.quant_plan import blocks, pareto, plan_of, search_plan
from runtime.llama import LlamaModel, synthetic_weights
from runtime.model_config import ModelConfig
from runtime.plan import load_plan

from .models import smollm2_path

TINY = ModelConfig(family="llama", hidden=64, intermediate=96, layers=3, heads=4, kv_heads=2, head_dim=16,
                   vocab=101, max_positions=256, norm_eps=1e-5, act="silu", rope_theta=10000.0)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("layers", [1, 3, 6, 7, 30])
def test_blocks_cover_every_layer_once(layers):
    parts = blocks(layers)
    assert len(parts) == min(layers, 6)
    assert [i for b in parts for i in b] == list(range(layers))
    assert max(len(b) for b in parts) - min(len(b) for b in parts) <= 1


def test_plan_of_names_every_linear_layer():
    params = {f"{role}.b{b}": "int8" if b == 0 else "none" for role in ("qkv", "o", "gate_up", "down") for b in range(3)}
    plan = plan_of(params, 3)
    assert len(plan) == 12 and plan["layers.0.down"] == "int8" and plan["layers.2.qkv"] == "none"


def test_pareto_keeps_only_non_dominated_points():
    pts = [(0, (1.0, 5.0)), (1, (2.0, 4.0)), (2, (2.0, 6.0)), (3, (0.5, 9.0)), (4, (3.0, 3.0)), (5, (3.0, 3.5))]
    assert sorted(pareto(pts)) == [0, 1, 3, 4]


def test_search_on_a_tiny_model_respects_the_bound(seed):
    weights = synthetic_weights(TINY, seed=seed % 1000)
    tokens = torch.randint(0, TINY.vocab, (2, 64), generator=torch.Generator().manual_seed(seed))
    result, plan = search_plan("tiny", TINY, weights, tokens, dtype="fp32", device=torch.device("cpu"), trials=12,
                               seed=1, max_ppl_increase=0.05, storage=None)
    assert result.trials == 12 and result.front
    points = [(p["kl"], p["bytes"]) for p in result.front]
    for a in points:  # nothing on the front is dominated by another front point
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in points)
    if plan is not None:
        assert result.chosen["ppl_increase"] <= 0.05
        assert len(plan.layers) == 4 * TINY.layers
        # the plan really is what was scored: rebuild the model with it and re-measure bytes
        model = LlamaModel(TINY, weights, ("fp32", None, "torch"), plan=dict(plan.layers))
        linear_bytes = sum(layer[r].nbytes for layer in model.layers for r in ("qkv", "o", "gate_up", "down"))
        assert linear_bytes == result.chosen["bytes"]
    # the int8 anchor is the first trial: far smaller than float, tiny KL
    assert result.front[-1]["bytes"] <= result.float_bytes


def test_cli_writes_front_and_a_plan_generate_runs(tmp_path):
    smollm2_path()
    out = tmp_path / "plans"
    res = CliRunner().invoke(app, ["autotune", "--model", "smollm2-135m", "--quant-plan", "--trials", "3",
                                   "--max-ppl-increase", "2%", "--out", str(out), "--storage",
                                   f"sqlite:///{tmp_path / 's.db'}", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    front = json.loads((out / "front.json").read_text())
    assert front["trials"] == 3 and data["plan_file"]
    plan = load_plan(out / "plan.json")
    assert plan.notes["ppl_increase"] <= 0.02 and len(plan.layers) == 4 * 30
    gen = CliRunner().invoke(app, ["generate", "--plan", str(out / "plan.json"), "--prompt", "Hi", "--max-new-tokens",
                                   "3", "--json"])
    assert gen.exit_code == 0, gen.output
    assert json.loads(gen.stdout)["plan"] == str(out / "plan.json")


@pytest.mark.parametrize("args, message", [
    (["--quant-plan"], "give --model NAME"),
    (["--model", "llama-3-8b", "--quant-plan"], "synthetic"),
    (["--model", "minilm-l6", "--quant-plan"], "an encoder"),
    (["--model", "smollm2-135m", "--quant-plan", "--max-ppl-increase", "lots"], "malformed --max-ppl-increase"),
])
def test_bad_plan_search_input_is_one_line_and_exit_2(args, message, capsys):
    from infertune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["autotune", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
