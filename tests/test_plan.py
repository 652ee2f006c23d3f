"""Quantization plan files: precedence of exact names and patterns, round trip, one-line errors."""

from __future__ import annotations

import json

import pytest

from runtime.plan import InvalidPlan, Plan, load_plan


def test_precedence_exact_then_longest_pattern_then_default():
    plan = Plan(default="int4-g128", layers={"layers.*": "int8", "layers.3.*": "int4-g32",
                                             "layers.3.down": "none", "lm_head": "none"})
    assert plan.scheme_for("layers.3.down", "int8") == "none"
    assert plan.scheme_for("layers.3.qkv", "int8") == "int4-g32"
    assert plan.scheme_for("layers.13.qkv", "int8") == "int8"  # layers.3.* must not match layers.13.*
    assert plan.scheme_for("lm_head", "int8") == "none"
    assert Plan(layers={"layers.0.o": "int8"}).scheme_for("layers.1.o", "int4-g64") == "int4-g64"
    names = [f"layers.{i}.{k}" for i in range(4) for k in ("qkv", "o")]
    resolved = Plan(default="int8", layers={"layers.2.*": "none"}).resolve(names, "int4-g128")
    assert [resolved[n] for n in names] == ["int8"] * 4 + ["none"] * 2 + ["int8"] * 2


def test_round_trip(tmp_path):
    plan = Plan(default="int4-g64", layers={"layers.1.down": "int8"}, model="smollm2-135m", notes={"kl": 0.01})
    path = tmp_path / "plan.json"
    plan.save(path)
    again = load_plan(path)
    assert again == Plan(default="int4-g64", layers={"layers.1.down": "int8"}, model="smollm2-135m",
                         notes={"kl": 0.01})


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "not readable JSON"),
    (json.dumps({"format": "other"}), "not an infertune quantization plan"),
    (json.dumps({"format": "infertune-quant-plan/1", "layers": {"x": "int3"}}), "unknown scheme 'int3'"),
    (json.dumps({"format": "infertune-quant-plan/1", "layers": ["x"]}), "'layers' must map"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidPlan, match=message) as exc:
        load_plan(path)
    assert "\n" not in str(exc.value)
