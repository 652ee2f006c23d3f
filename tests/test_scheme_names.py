"""One name per weight-quantization scheme: every alias (w8, w4gN, fp8) reads as the kernels'
name (int8, int4-gN, fp8-row) wherever a scheme is named: the parsing function itself, model
variants, plan files, the joint search's scheme list and a model's tuning problems."""

from __future__ import annotations

import json

import pytest

import kernels
from infertune.model_autotune import model_problems
from kernels.scheme_names import canonical_scheme, short_scheme
from runtime.errors import InvalidVariant
from runtime.plan import InvalidPlan, Plan, load_plan
from runtime.variant import WEIGHT_SCHEMES, parse_variant
from tuner.quant_search import candidates

from .fake_devices import CPU

ALIASES = {"w8": "int8", "w4g32": "int4-g32", "w4g64": "int4-g64", "w4g128": "int4-g128", "fp8": "fp8-row",
           "w4g16": "int4-g16", "w4g32-asym": "int4-g32-asym"}
CANONICAL = ("int8", "int4-g32", "int4-g64", "int4-g128", "int4-g32-asym", "fp8-row", "fp8-tensor", "none")


@pytest.mark.parametrize("alias, canonical", ALIASES.items())
def test_every_alias_reads_as_the_kernel_name(alias, canonical):
    assert canonical_scheme(alias) == canonical
    assert canonical_scheme(f" {alias} ") == canonical


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_names_stay_as_they_are(name):
    assert canonical_scheme(name) == name


@pytest.mark.parametrize("name", ["int3", "w4", "w4g", "w4g0", "int4-g", "W8", "fp16", ""])
def test_other_names_are_left_for_the_caller_to_refuse(name):
    assert canonical_scheme(name) == name.strip()


def test_short_spelling_round_trips_the_variant_schemes():
    for short, scheme in WEIGHT_SCHEMES.items():
        assert short_scheme(scheme) == short and short_scheme(short) == short
        assert canonical_scheme(short) == scheme  # the variant table and the parser agree
    assert short_scheme("int4-g32-asym") is None and short_scheme("fp8-tensor") is None
    assert short_scheme("int3") is None


@pytest.mark.parametrize("alias, canonical", [(a, c) for a, c in ALIASES.items() if a in WEIGHT_SCHEMES])
def test_a_variant_takes_either_spelling_and_shows_one(alias, canonical):
    dtype = "bf16"
    short = parse_variant(f"{dtype}+{alias}:torch", gpu=False)
    long = parse_variant(f"{dtype}+{canonical}:torch", gpu=False)
    assert short == long and long.scheme == canonical
    assert str(long) == f"{dtype}+{alias}:torch"  # labels of old run files stay as they were
    assert parse_variant(f"{dtype}+{canonical}+cg:triton", gpu=True) == parse_variant(f"{dtype}+{alias}+cg", gpu=True)


@pytest.mark.parametrize("text, message", [
    ("bf16+int4-g128+w4g128", "repeated part 'w4g128'"),
    ("bf16+int4-g16", "unknown or repeated part 'int4-g16'"),   # a scheme, but no runtime variant has it
    ("fp32+fp8-row", "fp8 weights run with fp16 or bf16"),
])
def test_variant_refusals_hold_for_the_long_spelling(text, message):
    with pytest.raises(InvalidVariant, match=message):
        parse_variant(text, gpu=False)


def test_a_plan_reads_aliases_as_the_canonical_schemes(tmp_path):
    plan = Plan(default="w4g128", layers={"layers.0.*": "w8", "layers.1.down": "int4-g32", "layers.2.o": "none"})
    assert plan.default == "int4-g128"
    assert dict(plan.layers) == {"layers.0.*": "int8", "layers.1.down": "int4-g32", "layers.2.o": "none"}
    assert plan == Plan(default="int4-g128", layers={"layers.0.*": "int8", "layers.1.down": "int4-g32",
                                                     "layers.2.o": "none"})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format": "infertune-quant-plan/1", "default": "w4g64",
                                "layers": {"layers.*.down": "w8"}}))
    loaded = load_plan(path)
    assert loaded.scheme_for("layers.3.down", "none") == "int8" and loaded.scheme_for("layers.3.o", "none") == "int4-g64"
    with pytest.raises(InvalidPlan, match="unknown scheme 'int3'"):
        Plan(layers={"x": "int3"})


def test_the_joint_search_takes_aliases():
    shape = {"M": 5, "N": 48, "K": 96}
    by_alias = candidates("w8,w4g32, int4-g64", shape, "fp16", False, CPU, kernels.get)
    by_name = candidates("int8,int4-g32,int4-g64", shape, "fp16", False, CPU, kernels.get)
    assert [c.scheme for c in by_alias] == [c.scheme for c in by_name]
    assert [c.problem for c in by_alias] == [c.problem for c in by_name]
    # an alias and its name are one scheme, searched once
    assert [c.scheme.name for c in candidates("w8,int8", shape, "fp16", False, CPU, kernels.get)] == ["int8"]


def test_model_tuning_problems_take_aliases():
    kw = {"batches": [2], "seq": 7, "gen": 3, "dtype": "fp16", "kernel": "matmul_w4a16"}
    assert model_problems("smollm2-135m", quant="w4g64", **kw) == model_problems("smollm2-135m", quant="int4-g64", **kw)
    assert all(p.opt("quant") == "int4-g64" for _, p in model_problems("smollm2-135m", quant="w4g64", **kw))
