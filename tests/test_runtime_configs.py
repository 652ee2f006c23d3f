"""The launch list (runtime/launches.py) is what the models really launch: a forward pass on
the triton backend asks the config source for exactly the (kernel, problem) pairs that
`kernel_launches` lists, so what `autotune --model` tunes is what the runtime hits. And
`LaunchConfigs` answers from its table, says where each config came from, and counts
launches nobody planned."""

from __future__ import annotations

import torch

from kernels.config_source import HeuristicSource, using_config_source
from kernels.device import current_device
from runtime.configs import LaunchConfigs
from runtime.generate import generate
from runtime.launches import kernel_launches
from runtime.llama import LlamaModel, synthetic_weights
from runtime.model_config import ModelConfig

TINY = ModelConfig(family="llama", hidden=32, intermediate=48, layers=2, heads=2, kv_heads=1, head_dim=16,
                   vocab=37, max_positions=64, norm_eps=1e-5, act="silu", rope_theta=10000.0)


def _listed(config, batch, seq, gen, dtype):
    return {(launch.kernel, launch.problem()) for launch in
            kernel_launches(config, batch=batch, seq=seq, dtype=dtype, gen=gen)}


def test_decoder_launches_exactly_what_the_list_says():
    model = LlamaModel(TINY, synthetic_weights(TINY, seed=1), ("fp32", None, "triton"))
    for batch, lengths in ((1, [5]), (3, [5, 2, 4])):
        source = LaunchConfigs(HeuristicSource(), current_device())
        prompts = [[(7 * b + i) % 37 for i in range(n)] for b, n in enumerate(lengths)]
        with using_config_source(source):
            generate(model, prompts, max_new_tokens=2)
        listed = _listed(TINY, batch, max(lengths), 2, "fp32")
        assert set(source.table) == listed, (set(source.table) ^ listed)


def test_encoder_launches_exactly_what_the_list_says(seed):
    from runtime.bert import BertModel

    from .test_bert import _hf_model

    _, config, weights = _hf_model(seed, hidden=32, heads=2, layers=1, intermediate=48)
    model = BertModel(config, weights, ("fp32", None, "triton"))
    for lengths in ([6], [6, 3]):
        source = LaunchConfigs(HeuristicSource(), current_device())
        ids = torch.randint(1, config.vocab, (len(lengths), max(lengths)))
        with using_config_source(source):
            model.forward(ids, torch.tensor(lengths, dtype=torch.int32))
        listed = _listed(config, len(lengths), max(lengths), 0, "fp32")
        assert set(source.table) == listed, (set(source.table) ^ listed)


class Counting:
    def __init__(self):
        self.calls = 0
        self.inner = HeuristicSource()

    def resolve(self, spec, problem, device):
        self.calls += 1
        return self.inner.resolve(spec, problem, device)


def test_prepared_table_answers_without_asking_again():
    inner = Counting()
    source = LaunchConfigs(inner, current_device())
    pairs = [(launch.kernel, launch.problem()) for launch in kernel_launches(TINY, batch=1, seq=4, dtype="fp32", gen=3)]
    source.prepare(pairs)
    asked = inner.calls
    assert asked == len(set(pairs))
    model = LlamaModel(TINY, synthetic_weights(TINY, seed=2), ("fp32", None, "triton"))
    with using_config_source(source):
        generate(model, [[1, 2, 3, 4]], max_new_tokens=3)
    assert inner.calls == asked and source.summary()["unplanned"] == 0
    summary = source.summary()
    assert summary["by_source"] == {"heuristic": len(set(pairs))}
    assert {row["kernel"] for row in summary["launches"]} >= {"matmul", "rmsnorm", "attention", "attention_decode"}
