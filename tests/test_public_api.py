"""The public API names of `infertune` resolve to the functions the CLI uses, on first use."""

from __future__ import annotations

import pytest

import infertune


@pytest.mark.parametrize("name", infertune._LAZY)
def test_each_public_name_is_the_library_function(name):
    found = getattr(infertune, name)
    assert callable(found) and found.__name__ == name
    assert name in infertune.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        infertune.nope  # noqa: B018


def test_the_choice_behind_the_api_is_the_exact_optimum():
    # Two Ms, two configs: each M wants its own config; with two buckets the plan gives it.
    plan = infertune.choose_buckets({1: 3, 64: 1}, {1: {"a": 1.0, "b": 2.0}, 64: {"a": 9.0, "b": 4.0}}, 2)
    assert plan.uppers == (1, 64) and plan.configs == ("a", "b")
    assert plan.expected == pytest.approx((3 * 1.0 + 4.0) / 4)
