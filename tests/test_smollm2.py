"""The real SmolLM2-135M-Instruct (GGUF, Q4_1) through our loader and decoder against
transformers loading the same file: the logits of a chat prompt, and 20 greedy tokens.

Both sides dequantize the file to fp32, so the two differ only in the forward pass (and in
our loader's q/k unpermutation, which this checks independently of transformers' own).
One test on purpose: transformers' GGUF loading takes ~20 s here (it parses the metadata
twice and rebuilds its name map per tensor), so it is done once.
"""

from __future__ import annotations

import pytest
import torch

from tests.models import smollm2_path

transformers = pytest.importorskip("transformers")

# Our tokenizer's chat template for [{"role": "user", "content": "What is the capital of
# France?"}] with the generation prompt: "<|im_start|>system\nYou are a helpful AI assistant
# named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of
# France?<|im_end|>\n<|im_start|>assistant\n" (fixed here so this test needs no tokenizer).
PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182,
          2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: with two on a busy 2-CPU machine each small op waits on the other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_smollm2_matches_transformers():
    from runtime.generate import generate
    from runtime.gguf_loader import load_gguf
    from runtime.llama import LlamaModel
    from runtime.presets import get_preset

    path = smollm2_path()
    loaded = load_gguf(path)
    assert loaded.config == get_preset("smollm2-135m").config
    ours = LlamaModel(loaded.config, loaded.tensors, ("fp32", None), max_positions=256)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                           dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf(torch.tensor([PROMPT])).logits[0, -1].double()
        want_tokens = hf.generate(torch.tensor([PROMPT]), max_new_tokens=20, do_sample=False, pad_token_id=0,
                                  eos_token_id=None)[0, len(PROMPT):].tolist()
    got = ours.prefill(torch.tensor([PROMPT]), [len(PROMPT)])[0].double()
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-3
    assert generate(ours, [PROMPT], 20).tokens == [want_tokens]
