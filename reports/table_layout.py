"""How a table cell is laid out, for every renderer: which columns hold numbers (right-aligned),
where a cell may wrap (at spaces and after the separators `,` and `|` of problem keys and
configs, never inside a word), how a long config is shortened for the HTML report (the full text
stays on hover), and how the terminal fits a table in its width or, when even one word per line
does not fit, switches to one "column  value" block per row. Pure functions of strings."""

from __future__ import annotations

import re
from dataclasses import dataclass

SEPARATORS = ",|"  # a problem key "M=4,N=576|fp32", a config "BLOCK_M=16,BLOCK_N=32": break after these

# A number with an optional unit, as reports.formatting writes them: "448 µs", "1.00x",
# "+3.2%", "5.99e-05", "50,224", "513.13". The unit is up to 8 characters with no digit or
# space ("tok/s", "MiB", "GB/s"), so "8x3072x576" or "M=4" are not numbers.
_NUMBER = re.compile(r"[+\-−]?(\d[\d,]*(\.\d+)?|\.\d+)(e[+\-]?\d+)?( ?[^\s\d,|=]{1,8})?")
_EMPTY = {"", "-", "—", "n/a"}

# "BLOCK_K=128,BLOCK_M=16,...,num_warps=8 (heuristic)": three or more key=value items, an
# optional note in parentheses after them.
_CONFIG = re.compile(r"(\w+=[^,|\s=]+)(, ?\w+=[^,|\s=]+){2,}( \(.*\))?")
COMPACT_OVER = 40  # characters: a config longer than this is shortened in the HTML table (7 Triton
#                    knobs spelled out run to ~90 characters, a 420 px column holds ~55)


def is_number(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text.strip()))


def numeric_columns(columns: list[str], rows: list[list[str]]) -> list[str]:
    """Per column "right" when every filled cell is a number (with its unit) and at least one
    is, else "left"."""
    out = []
    for i in range(len(columns)):
        cells = [str(r[i]).strip() for r in rows if i < len(r)]
        filled = [c for c in cells if c not in _EMPTY]
        out.append("right" if filled and all(is_number(c) for c in filled) else "left")
    return out


def alignment(columns: list[str], rows: list[list[str]], align: list[str] | None) -> list[str]:
    """The table's own alignment where its section set one, else the detected one."""
    return list(align) if align else numeric_columns(columns, rows)


def pieces(text: str) -> list[str]:
    """`text` cut at its break opportunities: each piece is a run of non-separator characters
    with the separator after it ("M=4," "N=576|" "fp32"), or a run of spaces."""
    return re.findall(r"\s+|[^\s" + re.escape(SEPARATORS) + r"]*[" + re.escape(SEPARATORS) + r"]|[^\s"
                      + re.escape(SEPARATORS) + r"]+", text)


def words(text: str) -> list[str]:
    """The unbreakable runs of `text` (what must stay on one line): pieces without spaces."""
    return [p for p in pieces(text) if not p.isspace()]


def longest_word(text: str) -> int:
    return max((len(w) for w in words(text)), default=0)


def wrap(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` characters, broken only at spaces and after `,`/`|`
    (a word longer than `width`, which the callers avoid, is cut as a last resort)."""
    width = max(width, 1)
    lines: list[str] = []
    line = ""
    for p in pieces(" ".join(str(text).split())):
        if p.isspace():
            if line:
                line += " "
            continue
        if len(line) + len(p) <= width:
            line += p
            continue
        if line.strip():
            lines.append(line.rstrip())
        while len(p) > width:
            lines.append(p[:width])
            p = p[width:]
        line = p
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def _short_key(key: str) -> str:
    parts = [p for p in key.split("_") if p]
    return "".join(p[0] for p in parts) if len(parts) > 1 else key


def compact_config(text: str) -> str | None:
    """A long config with its multi-word knob names cut to initials ("BLOCK_M=16,num_warps=4"
    -> "BM=16,nw=4"), or None when `text` is not a long config or two knobs would read alike."""
    text = text.strip()
    if len(text) <= COMPACT_OVER or not _CONFIG.fullmatch(text):
        return None
    head, _, note = text.partition(" (")
    items = [item.strip().split("=", 1) for item in head.split(",")]
    keys = [_short_key(k) for k, _ in items]
    if len(set(keys)) != len(keys):
        return None
    short = ",".join(f"{k}={v}" for k, (_, v) in zip(keys, items))
    return short + (f" ({note}" if note else "")


# --------------------------------------------------------------------------- the terminal


@dataclass
class Fit:
    """How a table goes into a terminal: "table" with these column widths (cell text, padding
    and borders excluded), or "vertical" (one block per row)."""

    layout: str
    widths: list[int]


def table_overhead(n_columns: int) -> int:
    """rich's default box: one border and one space either side of every cell, borders shared."""
    return 3 * n_columns + 1


def fit(columns: list[str], rows: list[list[str]], width: int) -> Fit:
    """Column widths that fit `width` without breaking a word: every column its natural width
    when they all fit; else every column its longest word and the room left shared out in
    proportion to how much each column wants beyond that; "vertical" when even the longest
    words do not fit side by side."""
    n = len(columns)
    cols = [[str(columns[i]), *[str(r[i]) for r in rows if i < len(r)]] for i in range(n)]
    natural = [max(len(" ".join(c.split())) for c in col) for col in cols]
    least = [max(max(longest_word(c) for c in col), 1) for col in cols]
    room = width - table_overhead(n)
    if sum(natural) <= room:
        return Fit("table", natural)
    if sum(least) > room:
        return Fit("vertical", [])
    widths = list(least)
    spare = room - sum(widths)
    want = [nat - lo for nat, lo in zip(natural, least)]
    total = sum(want)
    for i in range(n):
        widths[i] += spare * want[i] // total
    # the rounding's leftover to the columns that still want it, widest want first
    left = room - sum(widths)
    for i in sorted(range(n), key=lambda i: -(natural[i] - widths[i])):
        if left <= 0:
            break
        if widths[i] < natural[i]:
            widths[i] += 1
            left -= 1
    return Fit("table", widths)


def column_groups(columns: list[str], rows: list[list[str]], width: int) -> list[list[int]] | None:
    """For a table whose first column labels its rows (an empty header: "torch", "peaks", ...,
    with one column per run), the columns cut into groups that each fit `width` beside that
    first column, repeated in each: the Runs table of four runs at 120 columns is two tables
    instead of 4 x 14 lines of blocks. None for any other table, or when one run's column does
    not fit beside the labels."""
    if len(columns) < 3 or str(columns[0]).strip():
        return None
    least = [max(longest_word(str(c)) for c in [columns[i], *[r[i] for r in rows if i < len(r)]]) or 1
             for i in range(len(columns))]
    groups: list[list[int]] = []
    for i in range(1, len(columns)):
        if groups and sum(least[j] for j in [0, *groups[-1], i]) + table_overhead(len(groups[-1]) + 2) <= width:
            groups[-1].append(i)
        elif least[0] + least[i] + table_overhead(2) <= width:
            groups.append([i])
        else:
            return None
    return [[0, *g] for g in groups]


def vertical(columns: list[str], row: list[str], width: int) -> list[str]:
    """One row as lines "column  value", the value wrapped under itself; the first cell is the
    block's heading; an empty cell ("-") is left out (a 14-column row of the kernel table is
    ~10 lines instead of 15). A label wider than a third of `width` puts its value on the next
    line."""
    head = " ".join(str(row[0]).split()) if row else ""
    first = f"{columns[0]}: {head}" if columns and columns[0].strip() else head
    lines = wrap(first, width)
    labels = [" ".join(str(c).split()) for c in columns[1:]]
    label_w = max((len(label) for label in labels), default=0)
    inline = label_w <= width // 3
    for label, value in zip(labels, row[1:]):
        value = " ".join(str(value).split())
        if value in _EMPTY:
            continue
        if inline:
            body = wrap(value, width - label_w - 4)
            lines.append(f"  {label:<{label_w}}  {body[0]}")
            lines += [" " * (label_w + 4) + more for more in body[1:]]
        else:
            lines += [f"  {more}" for more in wrap(label, width - 2)]
            lines += [f"    {more}" for more in wrap(value, width - 4)]
    return lines
