"""tuner/bucket_map.py: a BucketMap round-trips through to_dict/from_dict, serves each M from
its bucket as tuner.traffic.BucketPlan does, and refuses malformed maps with one line."""

from __future__ import annotations

import random

import pytest

from tuner.bucket_map import BucketMap, InvalidBucketMap
from tuner.traffic import BucketPlan


def make(**changes):
    base = dict(kernel="matmul", device_name="cpu", capability="cpu", family="N=64,K=64|fp32",
                source_hash="0" * 64, triton_version="3.2.0", uppers=(3, 24, 512),
                configs=({"BLOCK_M": 16}, {"BLOCK_M": 32}, {"BLOCK_M": 64}),
                created="2025-01-01T00:00:00+00:00", extra={"buckets": 3})
    base.update(changes)
    return BucketMap(**base)


def test_round_trip_and_ranges():
    m = make()
    m.check()
    assert BucketMap.from_dict(m.to_dict()) == m
    assert m.ranges() == [(1, 3), (4, 24), (25, 512)]


def test_bucket_of_agrees_with_the_plan():
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    uppers = tuple(sorted(rng.sample(range(1, 5000), rng.randint(1, 6))))
    m = make(uppers=uppers, configs=tuple({"BLOCK_M": i + 1} for i in range(len(uppers))))
    plan = BucketPlan(uppers=uppers, configs=tuple(range(len(uppers))), expected=0.0)
    for x in [1, *uppers, *(u + 1 for u in uppers), *(rng.randint(1, 6000) for _ in range(50))]:
        assert m.bucket_of(x) == plan.bucket_of(x), (seed, x)
        assert m.config_for(x) == {"BLOCK_M": plan.bucket_of(x) + 1}, (seed, x)


@pytest.mark.parametrize("change,match", [
    ({"uppers": [4, 4]}, "increase strictly"),
    ({"uppers": [0, 4, 8]}, "upper bound"),
    ({"uppers": [1.5, 4, 8]}, "upper bound"),
    ({"uppers": [True, 4, 8]}, "upper bound"),
    ({"uppers": []}, "1 to 64 buckets"),
    ({"configs": [{"BLOCK_M": 16}]}, "one config per bucket"),
    ({"configs": [{"BLOCK_M": -1}, {"BLOCK_M": 1}, {"BLOCK_M": 2}]}, "BLOCK_M=-1"),
    ({"configs": [{}, {"BLOCK_M": 1}, {"BLOCK_M": 2}]}, "non-empty"),
    ({"device_name": "NVIDIA H100"}, "device_name"),
    ({"capability": "sm90"}, "capability"),
    ({"created": "yesterday"}, "created"),
    ({"family": "a\nb"}, "family"),
    ({"extra": {"x": float("nan")}}, "plain JSON"),
    ({"bogus": 1}, "unknown bucket map field"),
])
def test_malformed_maps_are_refused(change, match):
    data = {**make().to_dict(), **change}
    with pytest.raises(InvalidBucketMap, match=match) as info:
        BucketMap.from_dict(data)
    assert "\n" not in str(info.value)


def test_missing_field_and_not_an_object():
    data = make().to_dict()
    del data["uppers"]
    with pytest.raises(InvalidBucketMap, match="'uppers' is missing"):
        BucketMap.from_dict(data)
    with pytest.raises(InvalidBucketMap, match="must be an object"):
        BucketMap.from_dict([1, 2])
