"""Sentence embeddings from a BERT encoder, as sentence-transformers' all-MiniLM-L6-v2
pipeline computes them (modules.json: Transformer, Pooling(mean), Normalize): tokens
truncated to max_seq_length (256; sentence_bert_config.json), last hidden states mean-pooled
over the real tokens, L2-normalized. And cosine relevance of documents to a query.

Texts are batched by length (longest first, as sentence-transformers does), so each batch
pads to about its own length instead of the longest text's; results come back in input order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .bert import BertModel
from .errors import CorruptModelFile, InvalidModelConfig, InvalidWorkload

DEFAULT_MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length


@dataclass(frozen=True)
class EmbedSettings:
    """The pipeline around the encoder: how many tokens a text keeps, whether to normalize."""

    max_length: int = DEFAULT_MAX_LENGTH
    normalize: bool = True

    @classmethod
    def from_dir(cls, path: str | Path) -> EmbedSettings:
        """Read a sentence-transformers directory: sentence_bert_config.json's max_seq_length,
        modules.json's Normalize, the pooling config (mean only). Missing files keep the
        defaults (a plain Hugging Face directory). Raises InvalidModelConfig for a pooling
        mode other than mean, CorruptModelFile for unreadable JSON."""
        directory = Path(path)
        st_config = _read_json(directory / "sentence_bert_config.json") or {}
        max_length = st_config.get("max_seq_length") or DEFAULT_MAX_LENGTH
        modules = _read_json(directory / "modules.json")
        normalize = True
        if isinstance(modules, list):
            types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
            normalize = any(t.endswith("Normalize") for t in types)
            for m in modules:
                if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling"):
                    _check_mean_pooling(_read_json(directory / str(m.get("path", "")) / "config.json") or {})
        if not isinstance(max_length, int) or max_length < 1:
            raise InvalidModelConfig(f"max_seq_length must be a positive integer; got {max_length!r}")
        return cls(max_length=max_length, normalize=normalize)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelFile(f"cannot read {str(path)!r}: {exc}") from None


def _check_mean_pooling(pooling: dict) -> None:
    modes = sorted(k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modes and modes != ["mean_tokens"]:
        raise InvalidModelConfig(f"unsupported pooling {', '.join(modes)}; supported: mean_tokens")


@dataclass(frozen=True)
class EmbedTiming:
    """Where an embed call's time went (forward includes pooling; synchronized on CUDA)."""

    texts: int
    tokens: int  # real tokens encoded, padding excluded
    tokenize_s: float
    forward_s: float

    @property
    def seconds(self) -> float:
        return self.tokenize_s + self.forward_s

    @property
    def embeddings_per_s(self) -> float:
        return self.texts / self.seconds if self.seconds > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")


def _plain_tokenizer(tokenizer: Any) -> Any:
    """A `tokenizers.Tokenizer` without built-in padding or truncation (all-MiniLM's
    tokenizer.json pads and truncates to 128, which would cut texts shorter than the
    pipeline's 256). A copy: the caller's object is not changed."""
    if getattr(tokenizer, "padding", None) is None and getattr(tokenizer, "truncation", None) is None:
        return tokenizer
    clone = type(tokenizer).from_str(tokenizer.to_str())
    clone.no_padding()
    clone.no_truncation()
    return clone


def _ids_of(encoding: Any) -> list[int]:
    """Token ids of one encoding: a list of ints, or an object with .ids (padding, if any,
    dropped by its attention_mask)."""
    ids = getattr(encoding, "ids", encoding)
    mask = getattr(encoding, "attention_mask", None)
    if mask is not None:
        ids = [i for i, m in zip(ids, mask) if m]
    return [int(i) for i in ids]


def tokenize(tokenizer: Any, texts: Sequence[Any]) -> list[list[int]]:
    """Token ids per text, special tokens included ([CLS] ... [SEP]).

    tokenizer: None (texts are already token id sequences), a `tokenizers.Tokenizer`, an
    object whose encode_batch(texts) gives id lists (runtime.tokenizer's: one batched call),
    or any object whose encode(text) gives ids (or an encoding with .ids).
    """
    if tokenizer is None:
        return [[int(i) for i in t] for t in texts]
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "to_str"):  # tokenizers.Tokenizer
        return [_ids_of(e) for e in _plain_tokenizer(tokenizer).encode_batch(list(texts))]
    if hasattr(tokenizer, "encode_batch"):  # runtime.tokenizer's: one call encodes on all cores
        return [list(ids) for ids in tokenizer.encode_batch(list(texts))]
    return [_ids_of(tokenizer.encode(t)) for t in texts]


def truncate(ids: list[int], max_length: int) -> list[int]:
    """Keep the first max_length - 1 tokens and the last one (the [SEP] a BERT tokenizer
    ends every text with): what Hugging Face truncation gives, specials kept."""
    return ids if len(ids) <= max_length else ids[:max_length - 1] + ids[-1:]


def _encode_batches(model: BertModel, seqs: list[list[int]], batch_size: int, normalize: bool) -> torch.Tensor:
    """Embeddings [len(seqs), hidden] float32 on the CPU, in the order of `seqs`.

    The batches are launched back to back and the pooled vectors stay on the device until
    the end: one copy to the host and one wait, so that on a GPU building batch i + 1 (ids
    from Python lists: about 5 ms for 256 x 128 on this machine) overlaps batch i's kernels.
    """
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    pooled_parts = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        S = len(seqs[chunk[0]])
        lengths = torch.tensor([len(seqs[i]) for i in chunk], dtype=torch.int32)
        real = torch.arange(S)[None, :] < lengths[:, None]
        ids = torch.zeros(len(chunk), S, dtype=torch.long)
        ids[real] = torch.tensor([token for i in chunk for token in seqs[i]], dtype=torch.long)  # row by row
        states = model.forward(ids, lengths).float()  # [B, S, hidden]
        mask = real.to(states.device).unsqueeze(-1)
        pooled = (states * mask).sum(1) / lengths.to(states.device)[:, None].float()
        if normalize:
            pooled = F.normalize(pooled, p=2, dim=1)
        pooled_parts.append(pooled)
    out = torch.empty(len(seqs), model.config.hidden, dtype=torch.float32)
    if order:
        out[torch.tensor(order)] = torch.cat(pooled_parts).cpu()
    return out


def embed_timed(model: BertModel, tokenizer: Any, texts: Sequence[Any], batch_size: int = 32, *,
                settings: EmbedSettings | None = None) -> tuple[torch.Tensor, EmbedTiming]:
    """embed() and an EmbedTiming of the call."""
    settings = settings or EmbedSettings()
    if batch_size < 1:
        raise InvalidWorkload(f"batch_size must be a positive integer; got {batch_size!r}")
    max_length = min(settings.max_length, model.config.max_positions)
    t0 = time.perf_counter()
    seqs = [truncate(ids, max_length) for ids in tokenize(tokenizer, texts)]
    if any(not ids for ids in seqs):
        raise InvalidWorkload("a text tokenized to no tokens (a tokenizer without [CLS]/[SEP] and an empty text?)")
    t1 = time.perf_counter()
    if not seqs:
        return torch.empty(0, model.config.hidden), EmbedTiming(0, 0, t1 - t0, 0.0)
    result = _encode_batches(model, seqs, batch_size, settings.normalize)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    t2 = time.perf_counter()
    return result, EmbedTiming(len(seqs), sum(map(len, seqs)), t1 - t0, t2 - t1)


def embed(model: BertModel, tokenizer: Any, texts: Sequence[Any], batch_size: int = 32, *,
          settings: EmbedSettings | None = None) -> torch.Tensor:
    """Sentence embeddings [len(texts), hidden] float32 (CPU), in input order: mean pooling
    over real tokens, then L2 normalization (settings.normalize). tokenizer: see tokenize();
    None when texts are token id lists already."""
    return embed_timed(model, tokenizer, texts, batch_size, settings=settings)[0]


def relevance(model: BertModel, tokenizer: Any, query: Any, documents: Sequence[Any], batch_size: int = 32, *,
              settings: EmbedSettings | None = None) -> torch.Tensor:
    """Cosine similarity of each document's embedding to the query's: [len(documents)] float32."""
    vectors = F.normalize(embed(model, tokenizer, [query, *documents], batch_size, settings=settings), dim=1)
    return vectors[1:] @ vectors[0]
