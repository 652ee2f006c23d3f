"""Prompts of a wanted length: token ids, words, or lines of a user's file.

- Token ids (completions without --prompts): exactly N tokens whatever the tokenizer, since
  OpenAI's completions API (and vLLM, SGLang, `infertune serve`) take a list of ids as the
  prompt. Ids are drawn from TOKEN_IDS, 20..255: every BPE vocabulary of the served models
  has them as ordinary tokens (byte or ASCII pieces; SmolLM2's specials are 0..16, Llama 2's
  0..2, Llama 3's and Qwen's sit above 128000).
- Words (chat, embeddings): N common English words, each one token in the usual BPE
  vocabularies (" the", " time"), so the prompt is about N tokens; the server's usage
  reports the exact count.
- A file (--prompts): JSONL (each line a string or an object with "prompt" or "text") or plain
  text (each non-empty line a prompt), drawn in a seeded order, cycling."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOKEN_IDS = range(20, 256)
WORDS = ("the", "time", "people", "year", "way", "day", "thing", "man", "world", "life", "hand", "part", "child", "eye",
         "woman", "place", "work", "week", "case", "point", "number", "group", "problem", "fact", "water", "room",
         "mother", "area", "money", "story", "month", "lot", "right", "study", "book", "job", "word", "business",
         "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line",
         "end", "member", "law", "car", "city", "name")
MAX_FILE_BYTES = 64 * 2**20
MAX_PROMPTS = 100_000


class PromptError(ValueError):
    """A prompts file that cannot be used (one line)."""


def token_prompt(length: int, rng: random.Random) -> list[int]:
    return [rng.choice(TOKEN_IDS) for _ in range(length)]


def word_prompt(length: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(length))


def read_prompts(path: str | Path) -> list[str]:
    """The prompts in a file (module docstring). Raises PromptError; OSError for a file that
    cannot be read."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise PromptError(f"--prompts {str(path)!r} is a folder, not a file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise PromptError(f"--prompts {str(path)!r} is over {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PromptError(f"--prompts {str(path)!r} is not UTF-8 text") from None
    jsonl = p.suffix.lower() in (".jsonl", ".ndjson")
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(out) == MAX_PROMPTS:
            break
        if not jsonl:
            out.append(line)
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise PromptError(f"--prompts {str(path)!r} line {number}: not JSON") from None
        if isinstance(item, dict):
            item = item.get("prompt", item.get("text"))
        if not isinstance(item, str) or not item:
            raise PromptError(f"--prompts {str(path)!r} line {number}: want a string or an object with a "
                              "\"prompt\" or \"text\" string")
        out.append(item)
    if not out:
        raise PromptError(f"--prompts {str(path)!r} holds no prompt")
    return out
