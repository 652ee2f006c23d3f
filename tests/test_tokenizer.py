"""runtime.tokenizer against transformers: SmolLM2's tokenizer rebuilt from GGUF metadata
(ids, decoding, chat template) and MiniLM's tokenizer.json (ids with [CLS]/[SEP], truncation)."""

from __future__ import annotations

import sys

import pytest

from runtime.errors import ModelFilesMissing, UnsupportedArchitecture
from runtime.tokenizer import Tokenizer, load_tokenizer

from .models import minilm_dir, smollm2_path

TEXTS = [
    "Hello world",
    "  leading, trailing   and   repeated spaces  ",
    "naïve café — “curly quotes” 日本語のテキスト 🤖🚀 emoji",
    "def square(x):\n    return x ** 2  # comment\n\tprint('tab')\n",
    "3.14159 1234567890 -42 1e-5 0x1F 1,000,000",
    "<|im_start|>user\nhi<|im_end|>",
    "",
    "\n\n\r\n",
    "I'm sure you'll see they're WE'VE it's",
    "ÀÉÎÕÜ ßø Привет, мир! مرحبا",
    "a<|endoftext|>b <repo_name>",
    "https://example.com/path?q=1&r=2 user@example.org",
    "{\"json\": [1, 2, {\"k\": null}]}",
]

CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "Why? Explain\nin two lines."}],
]


def test_smollm2_matches_transformers():
    """Ids, decoding, special ids and chat template against transformers' tokenizer from the
    same GGUF. One test on purpose: both tokenizers are built once (under pytest-xdist a module
    fixture would be rebuilt in every worker that gets a test)."""
    from transformers import AutoTokenizer

    path = smollm2_path()
    ours, ref = load_tokenizer(path), AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in TEXTS:
        for special in (True, False):
            ids = ours.encode(text, add_special_tokens=special)
            assert ids == ref(text, add_special_tokens=special)["input_ids"], (text, special)
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True), text
        assert ours.decode(ids, skip_special_tokens=False) == ref.decode(ids), text

    assert (ours.bos_id, ours.eos_ids, ours.pad_id) == (ref.bos_token_id, (ref.eos_token_id,), ref.pad_token_id)
    assert ours.vocab_size == 49152
    assert ours.encode("<|im_end|>", add_special_tokens=False) == list(ours.eos_ids)

    for chat in CHATS:
        for generation_prompt in (True, False):
            text = ours.apply_chat_template(chat, add_generation_prompt=generation_prompt)
            expected = ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
            assert text == expected, (chat, generation_prompt)
            assert text.endswith("<|im_start|>assistant\n") == generation_prompt


def test_minilm_matches_transformers_and_sentence_transformers():
    """Ids with [CLS]/[SEP], truncation, no padding by default (MiniLM's tokenizer.json pads and
    truncates everything to 128; the caller decides lengths)."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    directory = minilm_dir()
    ours, ref = load_tokenizer(directory), AutoTokenizer.from_pretrained(str(directory))
    for text in TEXTS + ["word " * 600]:
        ids = ours.encode(text, max_length=512)
        assert ids == ref(text, truncation=True, max_length=512)["input_ids"], text
        assert ids[0] == ours.bos_id == 101 and ids[-1] == ours.eos_ids[0] == 102
        assert ours.encode(text, add_special_tokens=False) == ref(text, add_special_tokens=False)["input_ids"], text

    assert len(ours.encode("short")) == 3
    assert len(ours.encode("word " * 300)) == 302
    assert len(ours.encode("word " * 300, max_length=256)) == 256
    assert len(ours.encode("word " * 300)) == 302  # max_length does not stick
    assert ours.pad_id == 0

    model = SentenceTransformer(str(directory), device="cpu")
    texts = TEXTS[:4] + ["word " * 600]
    batch = model.tokenize(texts)
    for i, text in enumerate(texts):
        expected = [t for t, m in zip(batch["input_ids"][i].tolist(), batch["attention_mask"][i].tolist()) if m]
        assert ours.encode(text, max_length=model.max_seq_length) == expected, text


@pytest.mark.parametrize("which", ["minilm", "smollm2"])
def test_encode_batch_matches_transformers_per_text_and_across_threads(which):
    """encode_batch (one batched call of the backend) gives transformers' ids for each text,
    with and without specials, at several truncation lengths (odd ones, one below the
    specials' room, longer than every text); and threads that truncate differently at once
    do not see each other's setting (the backend's own truncation is shared state)."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoTokenizer

    if which == "minilm":
        ours, ref = load_tokenizer(minilm_dir()), AutoTokenizer.from_pretrained(str(minilm_dir()))
    else:
        path = smollm2_path()
        ours, ref = load_tokenizer(path), AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    rng = random.Random()
    words = " ".join(TEXTS).split()
    texts = TEXTS + [" ".join(rng.choice(words) for _ in range(rng.randint(1, 300))) for _ in range(40)]
    for specials in (True, False):
        assert ours.encode_batch(texts, specials) == [ref(t, add_special_tokens=specials)["input_ids"] for t in texts]
        for max_length in (3, 13, 257, 4096):
            want = [ref(t, add_special_tokens=specials, truncation=True, max_length=max_length)["input_ids"]
                    for t in texts]
            assert ours.encode_batch(texts, specials, max_length) == want, (specials, max_length)
            assert [ours.encode(t, specials, max_length) for t in texts] == want, (specials, max_length)

    lengths = [rng.choice((5, 17, None)) for _ in range(400)]
    text = "word " * 40
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads between nearly every bytecode, so races show
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda n: ours.encode(text, max_length=n), lengths))
    finally:
        sys.setswitchinterval(interval)
    assert [len(ids) for ids in got] == [n or len(ours.encode(text)) for n in lengths]


def test_chat_template_is_sandboxed():
    from jinja2.exceptions import SecurityError, TemplateError
    from tokenizers import Tokenizer as Backend
    from tokenizers import models

    backend = Backend(models.BPE())
    unsafe = Tokenizer(backend, chat_template="{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        unsafe.apply_chat_template([])
    raising = Tokenizer(backend, chat_template="{{ raise_exception('no system role') }}")
    with pytest.raises(TemplateError, match="no system role"):
        raising.apply_chat_template([])
    with pytest.raises(ModelFilesMissing, match="no chat template"):
        Tokenizer(backend).apply_chat_template([])


def test_unsupported_gguf_tokenizer():
    with pytest.raises(UnsupportedArchitecture, match="'llama'"):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "llama"})


def test_missing_tokenizer_json(tmp_path):
    with pytest.raises(ModelFilesMissing, match="tokenizer.json"):
        load_tokenizer(tmp_path)
