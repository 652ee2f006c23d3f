"""Text around the token ids the engine works in: a fallback tokenizer for models that have
none (synthetic presets), the prompt a chat request makes, incremental detokenization that
emits only final text, and stop strings.

Streaming must never send text it would later take back: a token can end in the middle of a
UTF-8 character (byte-level BPE splits multi-byte characters across tokens), and the text
sent so far can end with the start of a stop string. Both are held back until the next
token settles them, and flushed when the request ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

REPLACEMENT = "\ufffd"  # what a decoder writes for bytes that are not (yet) a whole character


class ByteTokenizer:
    """Tokenizer for a model without one: each UTF-8 byte of the text is the token id of the
    same value (0..255). Ids from 256 up (a synthetic model's vocabulary is random ids) decode
    as the placeholder "<id>" so that generated text is visible and its length tracks the
    token count."""

    bos_id = None
    eos_ids: tuple[int, ...] = ()
    pad_id = None
    chat_template = None

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    @property
    def vocab_size(self) -> int:
        return self.vocab

    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ids if max_length is None else ids[:max_length]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        parts: list[str] = []
        pending = bytearray()
        for i in ids:
            if 0 <= i < 256:
                pending.append(i)
                continue
            parts.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            parts.append(f"<{i}>")
        parts.append(pending.decode("utf-8", errors="replace"))
        return "".join(parts)


def message_text(content: Any) -> str:
    """A chat message's content as text: a string, None (an assistant turn with tool calls) or a
    list of {"type": "text", "text": ...} parts. Raises ValueError for other parts (images)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ValueError(f"message content parts of type {part.get('type')!r} are not supported; only text")
        texts.append(part["text"])
    return "".join(texts)


def chat_prompt(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> list[int]:
    """Token ids of a chat: the tokenizer's own template when it has one (the rendered template
    writes its special tokens itself, so it is encoded without adding more), else the plain
    template "role: content" a line per message, then "assistant:"."""
    plain = [{"role": m["role"], "content": message_text(m.get("content"))} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(plain, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    text = "".join(f"{m['role']}: {m['content']}\n" for m in plain) + "assistant:"
    return tokenizer.encode(text)


class Detokenizer:
    """Incremental decoding of one request's generated ids (the offsets method of Hugging Face
    TGI): decode a short window of recent ids with and without the new one; the difference is
    new text, unless it ends in an incomplete character, which is held until the next id.
    Decoding a window rather than each id alone keeps tokenizers that change a token's text by
    its neighbour (a leading space) right. `skip` ids (EOS) produce no text."""

    def __init__(self, tokenizer: Any, skip: Iterable[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.skip = frozenset(skip)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        """The text that `token` makes final (often "", while a character is incomplete)."""
        if token in self.skip:
            return ""
        self.ids.append(token)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) > len(prefix) and not text.endswith(REPLACEMENT):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""

    def flush(self) -> str:
        """The rest, at the end of the request (an incomplete character as U+FFFD)."""
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return text[len(prefix):]


class StopStrings:
    """Cuts generated text at the first stop string, which is not included in the output:
    the one that ends first (the longest of those ending at the same place). Text that could
    be the start of a stop string is held back until it is settled."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.stopped = False

    def add(self, text: str) -> str:
        """The part of held + `text` that is final. After a stop string, sets `stopped`."""
        if self.stopped:
            return ""
        buffer = self.held + text
        if not self.stops:
            self.held = ""
            return buffer
        # the stop string that ends first (where generation one character at a time would have
        # stopped, whatever the chunking), the longest of those ending there
        found = [(i + len(s), -len(s), i) for s in self.stops if (i := buffer.find(s)) >= 0]
        if found:
            self.stopped = True
            self.held = ""
            return buffer[:min(found)[2]]
        keep = max((_overlap(buffer, s) for s in self.stops), default=0)
        self.held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        """At the end without a stop string: the held text is final."""
        text, self.held = ("" if self.stopped else self.held), ""
        return text


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper start of `stop`."""
    for n in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
