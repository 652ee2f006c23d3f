"""Reading a traffic file (issue 14, part 1): the forward passes a service runs, as a count
per (tokens per pass, sequences per pass), for `infertune autotune --model NAME --traffic FILE`.

Two kinds of input, in CSV or JSON (told apart by content: JSON starts with `{`):

- a histogram of token counts per forward pass (M): CSV with the header `tokens,count` (or
  `m,count`), JSON `{"format": "infertune-traffic/1", "histogram": {"13": 40, ...}}` or a
  plain object `{"13": 40, ...}`. How many sequences share a pass is not said, so each pass
  is taken as one sequence (what lm_head and a decoder's final norm see, one row per
  sequence, is then M = 1);
- raw per-request token lengths in arrival order plus a max batch: CSV with a `length`
  column (other columns are ignored), JSON `{"lengths": [...], "max_batch": 8}` (format key
  optional); the max batch may come from the caller instead (`--max-batch`, which wins).

Raw lengths become passes the way our runtime batches: consecutive requests in arrival order
form batches of `max_batch` (the last one may be smaller), and a batch is right-padded to its
longest request (runtime/embed.py builds one [B, S] id tensor per batch with S its longest
text; runtime/generate.py pads every prompt to the longest), so a batch of B requests whose
longest is S tokens is one forward pass of M = B x S tokens and B sequences. A length above
the model's limit is cut to it when the model truncates (an encoder: embed keeps the first
max_length tokens), and refused when it does not (a decoder's prompt).

Every malformed input raises TrafficError: one line that names the file, the line or key,
and what is wrong (empty, negative, not an integer, non-ASCII digits, NaN, duplicate M,
unknown format).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "infertune-traffic/1"
MAX_TOKENS = 2**31 - 1     # a token count is an int32 dim of a kernel problem
MAX_COUNT = 10**15         # counts are summed as floats; 1e15 keeps them exact
MAX_BYTES = 64 * 2**20     # 64 MiB of text is millions of requests: past that it is not a traffic file
_COUNT_HEADERS = ("tokens", "m")
_LENGTH_HEADER = "length"


class TrafficError(ValueError):
    """A traffic file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Traffic:
    """Forward passes and how often each runs.

    passes: (tokens M, sequences B) -> number of passes, M = B x the padded length;
    kind: "histogram" (counts per M were given; B taken as 1) or "lengths" (raw requests);
    requests: how many requests the lengths held (None for a histogram);
    max_batch: the batch size the lengths were grouped by (None for a histogram);
    truncated: requests cut to the model's max length."""

    passes: dict[tuple[int, int], int]
    kind: str
    requests: int | None = None
    max_batch: int | None = None
    truncated: int = 0

    def histogram(self) -> dict[int, int]:
        """Passes per token count M, M increasing."""
        out: Counter[int] = Counter()
        for (m, _), count in self.passes.items():
            out[m] += count
        return dict(sorted(out.items()))

    @property
    def total(self) -> int:
        return sum(self.passes.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "passes": self.total, "requests": self.requests, "max_batch": self.max_batch,
                "truncated": self.truncated, "histogram": {str(m): c for m, c in self.histogram().items()}}


def read_traffic(path: str | Path, *, max_batch: int | None = None, max_length: int | None = None,
                 truncate: bool = True) -> Traffic:
    """Read the traffic file at `path` (see the module docstring for the formats).

    max_batch: the batch size raw lengths are grouped by (beats the file's "max_batch"); a
        histogram file takes none. max_length: the model's longest request; a longer one is
        cut to it when `truncate`, else refused. Raises TrafficError (one line)."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise TrafficError(f"cannot read the traffic file {name!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise TrafficError(f"traffic file {name!r} is over {MAX_BYTES // 2**20} MiB; give a histogram instead")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TrafficError(f"traffic file {name!r} is not UTF-8 text") from None
    return parse_traffic(text, name=name, max_batch=max_batch, max_length=max_length, truncate=truncate)


def parse_traffic(text: str, *, name: str = "<traffic>", max_batch: int | None = None,
                  max_length: int | None = None, truncate: bool = True) -> Traffic:
    """read_traffic on text already read. Raises TrafficError (one line)."""
    if max_batch is not None and (not _is_int(max_batch) or max_batch < 1):
        raise TrafficError(f"--max-batch must be a positive integer, got {max_batch!r}")
    stripped = text.strip()
    if not stripped:
        raise TrafficError(f"traffic file {name!r} is empty")
    if stripped[0] in "{[":
        histogram, lengths, file_batch = _parse_json(stripped, name)
    else:
        histogram, lengths, file_batch = _parse_csv(text, name)
    if histogram is not None:
        if max_batch is not None:
            raise TrafficError(f"{name!r} holds a histogram of tokens per pass; --max-batch applies to raw "
                               f"request lengths only")
        if not any(histogram.values()):
            raise TrafficError(f"traffic file {name!r} has no pass with a positive count")
        return Traffic({(m, 1): c for m, c in sorted(histogram.items()) if c > 0}, "histogram")
    assert lengths is not None
    if not lengths:
        raise TrafficError(f"traffic file {name!r} has no request lengths")
    batch = max_batch if max_batch is not None else file_batch
    if batch is None:
        raise TrafficError(f"{name!r} holds raw request lengths: give the max batch they are served in "
                           f"(--max-batch N, or \"max_batch\" in the JSON)")
    return batch_passes(lengths, batch, max_length=max_length, truncate=truncate, name=name)


def batch_passes(lengths: list[int], max_batch: int, *, max_length: int | None = None, truncate: bool = True,
                 name: str = "<traffic>") -> Traffic:
    """The forward passes of requests of these token `lengths`, in arrival order, served in
    batches of `max_batch` consecutive requests, each right-padded to its longest: a batch of
    B requests whose longest is S tokens is one pass of M = B x S tokens. Raises TrafficError."""
    passes: Counter[tuple[int, int]] = Counter()
    cut = 0
    if max_length is not None:
        over = [n for n in lengths if n > max_length]
        if over and not truncate:
            raise TrafficError(f"{name!r}: a request of {max(over)} tokens exceeds the model's {max_length}")
        cut = len(over)
        lengths = [min(n, max_length) for n in lengths]
    for start in range(0, len(lengths), max_batch):
        batch = lengths[start:start + max_batch]
        tokens = len(batch) * max(batch)
        if tokens > MAX_TOKENS:
            raise TrafficError(f"{name!r}: a batch of {len(batch)} x {max(batch)} tokens is over {MAX_TOKENS}")
        passes[tokens, len(batch)] += 1
    return Traffic(dict(sorted(passes.items())), "lengths", requests=len(lengths), max_batch=max_batch,
                   truncated=cut)


# -- parsing ---------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(text: str, what: str, where: str, low: int, high: int) -> int:
    """An integer written in ASCII digits in [low, high]; TrafficError saying what is wrong."""
    value = text.strip()
    if not value:
        raise TrafficError(f"{where}: {what} is empty")
    if value.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise TrafficError(f"{where}: {what} is {value!r}, not a number of tokens or passes")
    if value.startswith("-") and value[1:].isascii() and value[1:].replace(".", "", 1).isdigit():
        raise TrafficError(f"{where}: {what} is negative ({value})")
    if not value.isascii() and any(ch.isdigit() for ch in value):
        raise TrafficError(f"{where}: {what} {value!r} has non-ASCII digits; write 0-9")
    if not (value.isascii() and value.isdigit()):
        raise TrafficError(f"{where}: {what} {value!r} is not a whole number")
    number = int(value)
    if not low <= number <= high:
        raise TrafficError(f"{where}: {what} {number} is out of range ({low} to {high})")
    return number


def _json_integer(value: Any, what: str, where: str, low: int, high: int) -> int:
    if isinstance(value, str):  # "13": 40 keys are strings; a count written "40" is accepted the same way
        return _integer(value, what, where, low, high)
    if isinstance(value, float) and math.isnan(value):
        raise TrafficError(f"{where}: {what} is NaN")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise TrafficError(f"{where}: {what} is negative ({value})")
    if not _is_int(value):
        raise TrafficError(f"{where}: {what} {_short(value)} is not a whole number")
    if not low <= value <= high:
        raise TrafficError(f"{where}: {what} {value} is out of range ({low} to {high})")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _no_constants(token: str) -> float:
    raise TrafficError(f"{token} is not a number of tokens or passes")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise TrafficError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def _parse_json(text: str, name: str) -> tuple[dict[int, int] | None, list[int] | None, int | None]:
    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constants)
    except TrafficError as exc:
        raise TrafficError(f"{name!r}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise TrafficError(f"{name!r} is not valid JSON: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if not isinstance(data, dict):
        raise TrafficError(f"{name!r}: unknown traffic format (a JSON {type(data).__name__}); expected an object "
                           f"with \"histogram\" or \"lengths\"")
    if "format" in data and data["format"] != FORMAT:
        raise TrafficError(f"{name!r}: unknown traffic format {_short(data['format'])}; expected {FORMAT!r}")
    body = {k: v for k, v in data.items() if k != "format"}
    if "histogram" in body or "lengths" in body:
        unknown = sorted(set(body) - {"histogram", "lengths", "max_batch"})
        if unknown:
            raise TrafficError(f"{name!r}: unknown key {unknown[0]!r}; expected histogram, or lengths and max_batch")
        if "histogram" in body and "lengths" in body:
            raise TrafficError(f"{name!r}: give either \"histogram\" or \"lengths\", not both")
        if "histogram" in body:
            if "max_batch" in body:
                raise TrafficError(f"{name!r}: \"max_batch\" applies to raw \"lengths\", not to a histogram")
            return _json_histogram(body["histogram"], name), None, None
        lengths = body["lengths"]
        if not isinstance(lengths, list):
            raise TrafficError(f"{name!r}: \"lengths\" must be a list of token counts")
        out = [_json_integer(v, "length", f"{name!r} lengths[{i}]", 1, MAX_TOKENS) for i, v in enumerate(lengths)]
        batch = body.get("max_batch")
        if batch is not None:
            batch = _json_integer(batch, "max_batch", f"{name!r}", 1, MAX_TOKENS)
        return None, out, batch
    if "format" in data:
        raise TrafficError(f"{name!r}: a {FORMAT} file needs \"histogram\" or \"lengths\"")
    if not body:
        raise TrafficError(f"{name!r} is an empty histogram")
    if not any(any(c.isdigit() for c in key) or key.strip().lower() in ("nan", "inf", "infinity") for key in body):
        raise TrafficError(f"{name!r}: unknown traffic format (keys {', '.join(map(repr, list(body)[:3]))}); expected "
                           f"tokens: count, or \"histogram\" or \"lengths\"")
    return _json_histogram(body, name), None, None


def _json_histogram(value: Any, name: str) -> dict[int, int]:
    if not isinstance(value, dict):
        raise TrafficError(f"{name!r}: \"histogram\" must be an object of tokens: count")
    if not value:
        raise TrafficError(f"{name!r} is an empty histogram")
    out: dict[int, int] = {}
    for key, count in value.items():
        m = _integer(key, "token count", f"{name!r} key {key!r}", 1, MAX_TOKENS)
        if m in out:
            raise TrafficError(f"{name!r}: duplicate token count M={m}")
        out[m] = _json_integer(count, "count", f"{name!r} key {key!r}", 0, MAX_COUNT)
    return out


def _parse_csv(text: str, name: str) -> tuple[dict[int, int] | None, list[int] | None, None]:
    rows = [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0][1]]
    if len(set(header)) != len(header):
        raise TrafficError(f"{name!r} line {rows[0][0]}: a column is named twice in the header {','.join(header)}")
    body = rows[1:]
    if _LENGTH_HEADER in header:
        col = header.index(_LENGTH_HEADER)
        lengths = [_integer(_cell(row, col, header, name, n), "length", f"{name!r} line {n}", 1, MAX_TOKENS)
                   for n, row in body]
        return None, lengths, None
    m_col = next((header.index(h) for h in _COUNT_HEADERS if h in header), None)
    if m_col is None or "count" not in header:
        raise TrafficError(f"{name!r}: unknown traffic format (CSV header {','.join(header)!r}); expected "
                           f"tokens,count or m,count (a histogram) or a length column (raw requests)")
    c_col = header.index("count")
    out: dict[int, int] = {}
    for n, row in body:
        m = _integer(_cell(row, m_col, header, name, n), header[m_col], f"{name!r} line {n}", 1, MAX_TOKENS)
        if m in out:
            raise TrafficError(f"{name!r} line {n}: duplicate token count M={m}")
        out[m] = _integer(_cell(row, c_col, header, name, n), "count", f"{name!r} line {n}", 0, MAX_COUNT)
    if not out:
        raise TrafficError(f"traffic file {name!r} has a header and no rows")
    return out, None, None


def _cell(row: list[str], col: int, header: list[str], name: str, n: int) -> str:
    if len(row) != len(header):
        raise TrafficError(f"{name!r} line {n}: {len(row)} fields, the header has {len(header)}")
    return row[col]
