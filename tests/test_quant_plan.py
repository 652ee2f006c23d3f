"""The quantization plan search: pure block/plan/front functions, a search on a tiny model
(the front is non-dominated, the pick respects the perplexity bound, every layer is named),
and the CLI on the real SmolLM2 writing a plan that `generate --plan` runs."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from typer.testing import CliRunner

from infertune.cli import app
from infertune.quant_plan import blocks, pareto, plan_of, plan_sampler, search_plan
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


def _study(storage: str):
    return optuna.load_study(study_name="quant-plan|tiny|fp32|cpu", storage=storage)


def test_search_on_a_tiny_model_respects_the_bound(seed, tmp_path):
    weights = synthetic_weights(TINY, seed=seed % 1000)
    tokens = torch.randint(0, TINY.vocab, (2, 64), generator=torch.Generator().manual_seed(seed))
    storage = f"sqlite:///{tmp_path / 'plan.db'}"
    result, plan = search_plan("tiny", TINY, weights, tokens, dtype="fp32", device=torch.device("cpu"), trials=12,
                               seed=1, max_ppl_increase=0.05, storage=storage)
    assert result.trials == 12 and result.front
    points = [(p["kl"], p["bytes"]) for p in result.front]
    for a in points:  # nothing on the front is dominated by another front point
        assert not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in points)
    # int8 and int4 cost a synthetic model far less than +5% perplexity: there is a plan
    assert plan is not None and result.chosen is not None
    assert result.chosen["ppl_increase"] <= 0.05 and result.chosen in result.front
    meeting = [p for p in result.front if p["ppl_increase"] <= 0.05]
    assert result.chosen["bytes"] == min(p["bytes"] for p in meeting)  # the smallest plan within the bound
    assert len(plan.layers) == 4 * TINY.layers
    # the plan really is what was scored: rebuild the model with it and re-measure bytes
    model = LlamaModel(TINY, weights, ("fp32", None, "torch"), plan=dict(plan.layers))
    linear_bytes = sum(layer[r].nbytes for layer in model.layers for r in ("qkv", "o", "gate_up", "down"))
    assert linear_bytes == result.chosen["bytes"]
    # the anchors are the first trials: all-int8, then all-int4 (g128, g32); int8 is about a
    # quarter of the fp32 bytes (one byte a weight plus a scale a row) at a tiny KL
    trials = _study(storage).trials
    assert [set(t.params.values()) for t in trials[:3]] == [{"int8"}, {"int4-g128"}, {"int4-g32"}]
    int8 = trials[0].user_attrs
    assert 0.25 * result.float_bytes <= int8["bytes"] < 0.3 * result.float_bytes
    assert int8["kl"] < 1e-4 and abs(int8["ppl"] / result.float_ppl - 1) < 0.01
    # int4: half a byte a weight (g128 pads this model's K=64 rows to a whole group: still under int8)
    assert trials[2].user_attrs["bytes"] < 0.2 * result.float_bytes and trials[1].user_attrs["bytes"] < int8["bytes"]


def test_a_stored_plan_study_is_continued(tmp_path):
    weights = synthetic_weights(TINY, seed=3)
    tokens = torch.randint(0, TINY.vocab, (1, 32), generator=torch.Generator().manual_seed(3))
    storage = f"sqlite:///{tmp_path / 'plan.db'}"
    kw = {"dtype": "fp32", "device": torch.device("cpu"), "seed": 1, "max_ppl_increase": 0.05, "storage": storage}
    first, _ = search_plan("tiny", TINY, weights, tokens, trials=4, **kw)
    second, _ = search_plan("tiny", TINY, weights, tokens, trials=3, sampler="random", **kw)
    assert (first.trials, second.trials) == (4, 7)
    trials = _study(storage).trials
    assert len(trials) == 7
    anchors = [t.number for t in trials if len(set(t.params.values())) == 1 and t.params["qkv.b0"] != "none"]
    assert anchors[:3] == [0, 1, 2] and len(anchors) == 3  # the anchors are not measured again


def test_plan_samplers():
    assert isinstance(plan_sampler("tpe", 0), optuna.samplers.TPESampler)
    assert isinstance(plan_sampler("random", 0), optuna.samplers.RandomSampler)
    with pytest.raises(ValueError, match="tpe or random"):
        plan_sampler("grid", 0)


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
