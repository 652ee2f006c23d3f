"""Tokenizers for the built-in models, over the `tokenizers` library.

Two sources:
- a tokenizer.json (Hugging Face directories such as MiniLM's), loaded as is, with the
  file's own padding and truncation switched off (MiniLM's pads every input to 128): the
  caller decides lengths, or passes `max_length`;
- a GGUF file's metadata (SmolLM2), which has no tokenizer.json. For `tokenizer.ggml.model`
  = gpt2 the tokenizer is rebuilt the way transformers' GGUF converter does it: byte-level
  BPE from the token list and merges, the ByteLevel pre-tokenizer (GPT-2 split regex, no
  prefix space) and decoder, the tokens marked control (type 3) added as special tokens and
  user-defined ones (type 4) as added tokens, so they are matched whole.

Chat templates are Jinja; they render in jinja2's sandboxed environment (a template comes
from a downloaded file), with the same globals and filters transformers provides
(raise_exception, strftime_now, tojson), trim_blocks and lstrip_blocks on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import CorruptModelFile, ModelFilesMissing, UnsupportedArchitecture

_CONTROL, _USER_DEFINED = 3, 4


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet byte-level BPE tokens are spelled in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


class Tokenizer:
    """Text <-> token ids for one model, plus its special ids and chat template."""

    def __init__(self, backend, *, bos_id: int | None = None, eos_ids: Sequence[int] = (), pad_id: int | None = None,
                 add_bos: bool = False, chat_template: str | None = None, special_tokens: dict[str, str] | None = None):
        self.backend = backend
        self.bos_id = bos_id
        self.eos_ids = tuple(eos_ids)
        self.pad_id = pad_id
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens or {})  # bos_token, eos_token, ... as text, for templates

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """From a tokenizer.json; its directory's tokenizer_config.json / special_tokens_map.json
        supply the chat template and special tokens where present."""
        from tokenizers import Tokenizer as Backend

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ModelFilesMissing(f"no tokenizer.json at {str(path)!r}")
        try:
            backend = Backend.from_file(str(path))
        except Exception as exc:  # the library raises a bare Exception on a bad file
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise CorruptModelFile(f"cannot read tokenizer {str(path)!r}: {first}") from None
        backend.no_padding()
        backend.no_truncation()
        config = _read_json(path.parent / "tokenizer_config.json")
        specials = {k: _token_text(v) for k, v in _read_json(path.parent / "special_tokens_map.json").items()}
        specials.update({k: _token_text(v) for k, v in config.items() if k.endswith("_token") and v is not None})
        specials = {k: v for k, v in specials.items() if isinstance(v, str)}

        def token_id(key: str) -> int | None:
            text = specials.get(key)
            return backend.token_to_id(text) if text else None

        eos = token_id("eos_token") if "eos_token" in specials else token_id("sep_token")
        return cls(backend, bos_id=token_id("bos_token") if "bos_token" in specials else token_id("cls_token"),
                   eos_ids=() if eos is None else (eos,), pad_id=token_id("pad_token"),
                   chat_template=config.get("chat_template") if isinstance(config.get("chat_template"), str) else None,
                   special_tokens=specials)

    @classmethod
    def from_gguf(cls, path: str | Path, metadata: dict[str, Any] | None = None) -> Tokenizer:
        """From a GGUF file's tokenizer.* metadata (or that metadata, already read)."""
        if metadata is None:
            from .gguf_loader import read_metadata

            metadata = read_metadata(path)
        return cls.from_gguf_metadata(metadata)

    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any]) -> Tokenizer:
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as Backend

        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise UnsupportedArchitecture(f"unsupported GGUF tokenizer {kind!r}; supported: gpt2 (byte-level BPE)")
        tokens = list(meta.get("tokenizer.ggml.tokens") or [])
        merges = list(meta.get("tokenizer.ggml.merges") or [])
        if not tokens or not merges:
            raise CorruptModelFile("GGUF metadata lacks tokenizer.ggml.tokens or tokenizer.ggml.merges")
        spelling = _bytes_to_unicode()
        alphabet = set(spelling.values())

        def spelled(token: str) -> str:
            return token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8"))

        vocab = {spelled(token): index for index, token in enumerate(tokens)}
        pairs = [tuple(merge.split(" ", 1)) for merge in merges]
        backend = Backend(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        types = list(meta.get("tokenizer.ggml.token_type") or [])
        backend.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                    for t, kind_ in zip(tokens, types) if kind_ == _CONTROL and set(t) <= alphabet])
        backend.add_tokens([AddedToken(t, normalized=False, special=False)
                            for t, kind_ in zip(tokens, types) if kind_ == _USER_DEFINED and t in vocab])

        def meta_id(key: str) -> int | None:
            value = meta.get(f"tokenizer.ggml.{key}")
            return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

        bos, eos, pad = meta_id("bos_token_id"), meta_id("eos_token_id"), meta_id("padding_token_id")
        specials = {name: tokens[i] for name, i in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad),
                                                     ("unk_token", meta_id("unknown_token_id"))) if i is not None}
        return cls(backend, bos_id=bos, eos_ids=() if eos is None else (eos,), pad_id=pad,
                   add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   chat_template=meta.get("tokenizer.chat_template"), special_tokens=specials)

    # -- use -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Token ids of `text`. add_special_tokens: the model's own ([CLS] ... [SEP] for BERT,
        BOS where the GGUF says add_bos_token). max_length truncates, keeping the trailing
        special token (BERT: [SEP] stays last)."""
        return self.encode_batch([text], add_special_tokens, max_length)[0]

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = True,
                     max_length: int | None = None) -> list[list[int]]:
        """encode() of each text, in one call of the backend: the `tokenizers` library encodes
        a batch on all cores (1024 MiniLM texts of 128 tokens on a 2-core machine: 0.17-0.25 s,
        against 0.25-0.40 s one text at a time). Truncation works on each call's own
        encodings, never on the backend's settings, so threads (the server's) may share one
        Tokenizer; with max_length below the specials' room the specials alone come back."""
        texts = list(texts)
        if max_length is None:
            encodings = self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        else:
            # What the backend's own truncation does, without setting it on the shared backend:
            # cut the text's tokens to leave room for the specials, then add them.
            room = max(0, max_length - (self.backend.num_special_tokens_to_add(False) if add_special_tokens else 0))
            encodings = self.backend.encode_batch(texts, add_special_tokens=False)
            for encoding in encodings:
                encoding.truncate(room)
            if add_special_tokens:
                encodings = [self.backend.post_process(e) for e in encodings]
        return [self._with_bos(e.ids, add_special_tokens, max_length) for e in encodings]

    def _with_bos(self, ids: list[int], add_special_tokens: bool, max_length: int | None) -> list[int]:
        if add_special_tokens and self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
            if max_length is not None:
                ids = ids[:max_length]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True,
                            **extra: Any) -> str:
        """The prompt text the model's chat template makes of `messages` (not tokenized:
        the template writes the special tokens itself, so encode it with add_special_tokens=False)."""
        if not self.chat_template:
            raise ModelFilesMissing("this tokenizer has no chat template")
        context = {**self.special_tokens, **extra}
        return _compile(self.chat_template).render(messages=list(messages),
                                                   add_generation_prompt=add_generation_prompt, **context)


def _raise_exception(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelFile(f"cannot read {str(path)!r}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> Any:
    """special_tokens_map values are a string or an AddedToken dict ({"content": ...})."""
    return value.get("content") if isinstance(value, dict) else value


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a model path as store.model_path gives it: a GGUF file or an HF directory."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return Tokenizer.from_gguf(path)
    return Tokenizer.from_file(path)
