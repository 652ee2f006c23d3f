"""How the report writes a time and a number: one place for reports.document and the section
modules it calls (which cannot import document: it imports them)."""

from __future__ import annotations

from typing import Any


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1.0:
        return f"{value * 1000:.3g} µs"
    if value < 1000.0:
        return f"{value:.3g} ms" if value < 100 else f"{value:.1f} ms"
    return f"{value / 1000:.2f} s"


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def config_text(config: Any, sep: str = ",") -> str:
    """"BLOCK_M=16,BLOCK_N=32" (`sep` ", " where a table cell should wrap between items); "-"
    for none."""
    if not config:
        return "-"
    if isinstance(config, dict):
        return sep.join(f"{k}={v}" for k, v in config.items())
    return str(config)
