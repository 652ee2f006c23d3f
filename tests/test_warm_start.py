"""tuner/warm_start.py and tuner/devices.py: which configs a warm start proposes (ranked
against a brute-force ordering of planted records), every source kind, one-line errors, and
the known-GPU table (names, OEM spellings, renamed cards by their numbers)."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

import kernels
from kernels.spec import Config
from tuner.database import dump_json, open_database
from tuner.devices import KNOWN_DEVICES, device_for, identify, known_names, matches_by_numbers
from tuner.keys import normalize_device_name
from profilers.timing import Timing
from tuner.outcome import Outcome
from tuner.replay import Recording, ReplayEvaluator
from tuner.search import SearchOptions, tune
from tuner.warm_start import WarmSource, WarmStartError, open_warm_source

from .db_records import make_record
from .fake_devices import A100, CPU, H100, L4

MATMUL = kernels.get("matmul")
N, K = 256, 128


def problem(m: int, n: int = N, k: int = K, dtype: str = "fp16", **options):
    return MATMUL.problem({"M": m, "N": n, "K": k}, dtype, options)


def distinct_configs(device, count: int, rng: random.Random, prob=None) -> list[dict]:
    """`count` different configs valid for every M these tests use on `device`."""
    ms = (1, 4, 16, 64, 256)
    pool = [c for c in MATMUL.valid_configs(prob or problem(16), device)
            if all(MATMUL.reject_reason(c, problem(m), device) is None for m in ms)]
    return [dict(c) for c in rng.sample(pool, count)]


# -- ranking -------------------------------------------------------------------------------------
def test_same_family_nearest_m_first_then_other_families(seed):
    rng = random.Random(seed)
    ms = rng.sample([1, 2, 4, 8, 32, 64, 128, 256], 6)
    configs = distinct_configs(H100, len(ms) + 2, rng)
    records = [make_record(shape={"M": m, "N": N, "K": K}, device=H100, config=c, median_ms=rng.uniform(0.1, 1))
               for m, c in zip(ms, configs)]
    # Another family of the same kernel and dtype (N doubled), and another dtype: the first
    # comes after every same-family record, the second never.
    other_family = make_record(shape={"M": 16, "N": 2 * N, "K": K}, device=H100, config=configs[-2])
    other_dtype = make_record(shape={"M": 16, "N": N, "K": K}, dtype="fp32", device=H100, config=configs[-1])
    source = WarmSource.from_records(rng.sample([*records, other_family, other_dtype], len(records) + 2), "test")
    want = 16
    truth = sorted(records, key=lambda r: (abs(math.log2(r.shape["M"]) - math.log2(want)), r.median_ms))
    got = source.configs_for(MATMUL, problem(want), H100, limit=len(records) + 2)
    assert got == [Config(r.config) for r in truth] + [Config(other_family.config)]
    assert source.configs_for(MATMUL, problem(want), H100, limit=2) == got[:2]


def test_configs_are_revalidated_for_the_target_and_deduplicated():
    p = problem(128, n=4096, k=4096)
    big = next(c for c in MATMUL.valid_configs(p, H100) if MATMUL.reject_reason(c, p, L4) is not None
               and "shared memory" in MATMUL.reject_reason(c, p, L4))
    small = MATMUL.heuristic(p, L4)
    records = [make_record(shape={"M": 128, "N": 4096, "K": 4096}, device=H100, config=dict(big)),
               make_record(shape={"M": 64, "N": 4096, "K": 4096}, device=H100, config=dict(small)),
               make_record(shape={"M": 256, "N": 4096, "K": 4096}, device=A100, config=dict(small))]
    source = WarmSource.from_records(records, "test")
    assert source.configs_for(MATMUL, p, H100) == [big, small]  # the H100 takes both; `small` once
    assert source.configs_for(MATMUL, p, L4) == [small]          # the L4 cannot hold `big`'s tiles
    why = source.explain(MATMUL, p, L4)[0].why
    assert "M=64" in why and "nvidia-h100-80gb-hbm3" in why


def test_at_equal_distance_this_device_then_same_capability_then_measured(seed):
    rng = random.Random(seed)
    a, b, c, d = distinct_configs(H100, 4, rng)
    h200 = device_for("h200").info
    shape = {"M": 32, "N": N, "K": K}
    other_gpu = make_record(shape=shape, device=A100, config=a, median_ms=0.01)
    same_cap = make_record(shape=shape, device=H100, config=b, median_ms=0.5)
    transferred = make_record(shape=shape, device=h200, config=c, median_ms=0.01,
                              extra={"transferred_from": "nvidia-h100-80gb-hbm3", "transfer": {}})
    mine = make_record(shape=shape, device=h200, config=d, median_ms=0.9)
    source = WarmSource.from_records([other_gpu, transferred, same_cap, mine], "test")
    got = source.configs_for(MATMUL, problem(32), h200)
    assert got == [Config(d), Config(c), Config(b), Config(a)]


def test_warm_started_search_measures_the_proposals_right_after_the_default():
    """Through tuner.search: the configs enqueued are the trials after the default."""
    p = problem(16)
    rng = random.Random(7)
    configs = [Config(c) for c in distinct_configs(CPU, 3, rng)]
    timing = {c: rng.uniform(1, 2) for c in MATMUL.valid_configs(p, CPU)}
    outcomes = {c: Outcome(status="ok", timing=Timing(ms, ms, ms, ms, ms, 3, "wall-clock", False, True))
                for c, ms in timing.items()}
    evaluator = ReplayEvaluator(Recording("matmul", p, CPU, None, outcomes))
    result = tune(MATMUL, p, CPU, evaluator, storage=None,
                  options=SearchOptions(trials=6, sampler="random", seed=1, retime_top=0, warm_start=tuple(configs)))
    default = MATMUL.heuristic(p, CPU)
    ran = [Config(h["config"]) for h in result.history]
    assert ran[0] == default
    assert ran[1:1 + len([c for c in configs if c != default])] == [c for c in configs if c != default]
    assert result.warm_started == len([c for c in configs if c != default])


# -- sources -------------------------------------------------------------------------------------
def _db_with(tmp_path, records, name="tuning.db"):
    path = tmp_path / name
    with open_database(str(path)) as db:
        db.put_many(records)
    return str(path)


def test_every_kind_of_source_gives_the_same_configs(tmp_path):
    rng = random.Random(3)
    configs = distinct_configs(H100, 3, rng)
    records = [make_record(shape={"M": m, "N": N, "K": K}, device=H100, config=c, median_ms=ms)
               for m, c, ms in zip((8, 32, 128), configs, (1.0, 0.5, 0.1))]
    db = _db_with(tmp_path, records + [make_record(shape={"M": 8, "N": N, "K": K}, device=A100)])
    with open_database(db) as database:
        documents = database.export_json("nvidia-h100-80gb-hbm3")
    exported = tmp_path / "exports"
    exported.mkdir()
    (exported / "nvidia-h100-80gb-hbm3.json").write_text(dump_json(documents["nvidia-h100-80gb-hbm3"]))
    other = _db_with(tmp_path, records, name="other.db")
    want = [Config(c) for c in (configs[1], configs[0], configs[2])]  # M=32 (faster), M=8 (one octave too), M=128
    sources = {
        "device name": open_warm_source("nvidia-h100-80gb-hbm3", db),
        "device alias": open_warm_source("H100", db),
        "torch spelling": open_warm_source("NVIDIA_H100_80GB_HBM3", db),
        "export file": open_warm_source(str(exported / "nvidia-h100-80gb-hbm3.json"), db),
        "export folder": open_warm_source(str(exported), None),
        "database file": open_warm_source(other, None),
        "database url": open_warm_source(f"sqlite:///{other}", None),
    }
    for what, source in sources.items():
        # 8 and 32 are both one octave from 16: the tie goes to the faster record.
        assert source.configs_for(MATMUL, problem(16), H100) == want, what
        assert "3 record(s) (matmul 3)" in source.describe(), what


def test_a_device_name_source_is_only_that_device(tmp_path):
    db = _db_with(tmp_path, [make_record(device=H100), make_record(device=A100, shape={"M": 8, "N": N, "K": K})])
    source = open_warm_source("a100", db)
    assert {r.device_name for r in source.records} == {"nvidia-a100-sxm4-80gb"}
    assert "device nvidia-a100-sxm4-80gb" in source.describe()


@pytest.mark.parametrize("case", ["missing", "unknown device", "not json", "not an export", "empty db", "folder",
                                  "blank", "no database"])
def test_bad_sources_are_one_line_errors(tmp_path, case):
    db = _db_with(tmp_path, [make_record(device=H100)])
    text = {
        "missing": str(tmp_path / "nope.json"),
        "unknown device": "nvidia-b300",
        "not json": str(tmp_path / "bad.json"),
        "not an export": str(tmp_path / "other.json"),
        "empty db": _db_with(tmp_path, [], name="empty.db"),
        "folder": str(tmp_path / "folder"),
        "blank": " ",
        "no database": "h100",
    }[case]
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    (tmp_path / "folder").mkdir()
    where = str(tmp_path / "absent.db") if case == "no database" else db
    with pytest.raises(WarmStartError) as info:
        open_warm_source(text, where)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    if case in ("missing", "unknown device"):
        assert "nvidia-h100-80gb-hbm3" in message  # names the devices there are
    if case == "empty db":
        assert "no record" in message


# -- the table of known GPUs -----------------------------------------------------------------------
def test_known_devices_are_consistent():
    smem = {(9, 0): 227 * 1024, (8, 0): 163 * 1024, (8, 6): 99 * 1024, (8, 9): 99 * 1024}
    assert len(set(known_names())) == len(KNOWN_DEVICES) >= 10
    for d in KNOWN_DEVICES:
        assert d.info.smem_per_block == smem[d.info.capability], d.name
        assert device_for(d.info.name) is d and device_for(d.name) is d
        for alias in d.aliases:
            assert device_for(alias) is d, alias
    assert device_for("h200").info == dataclasses.replace(device_for("NVIDIA H200").info)
    assert device_for("h200").info.total_memory == 150109880320  # this project's H200 run
    assert (device_for("h100").info.sm_count, device_for("h100 pcie").info.sm_count) == (132, 114)
    assert device_for("Tesla T4") is None and device_for("nvidia-b300") is None


@pytest.mark.parametrize("name, expected", [
    ("HPE NVIDIA H100 80GB HBM3 OEM", "nvidia-h100-80gb-hbm3"),
    ("NVIDIA H100 PCIe (TM) Dell", "nvidia-h100-pcie"),
    ("NVIDIA_H100_NVL", "nvidia-h100-nvl"),
    ("nvidia a100 80gb pcie", "nvidia-a100-80gb-pcie"),
    ("NVIDIA A100-SXM4-40GB", "nvidia-a100-sxm4-40gb"),
    ("Lenovo GeForce RTX 4090 D", "nvidia-geforce-rtx-4090"),
])
def test_oem_spellings_are_found_by_their_words(name, expected):
    assert device_for(name).name == expected


def test_a_renamed_card_is_identified_by_its_numbers():
    real = device_for("h100").info
    renamed = dataclasses.replace(real, name="CloudCo Accelerator X1", total_memory=int(real.total_memory * 1.01))
    found, how = identify(renamed)
    assert found.name == "nvidia-h100-80gb-hbm3" and "132 SMs" in how and "9.0" in how
    # SXM and NVL share compute capability and SM count: the memory tells them apart.
    nvl = dataclasses.replace(device_for("h100 nvl").info, name="Renamed")
    assert [d.name for d in matches_by_numbers(nvl)] == ["nvidia-h100-nvl"]
    off = dataclasses.replace(renamed, total_memory=int(real.total_memory * 1.05))
    assert identify(off)[0] is None and "matches no known GPU" in identify(off)[1]
    assert identify(CPU)[0] is None
    # A name that says H100 on a card whose capability is not 9.0 is not believed.
    liar = dataclasses.replace(device_for("l4").info, name="NVIDIA H100 80GB HBM3")
    assert identify(liar)[0].name == "nvidia-l4"
    assert normalize_device_name(found.info.name) == found.name


# -- the figure -------------------------------------------------------------------------------------
def test_bench_warm_start_smoke(tmp_path):
    from bench import warm_start as bench_warm_start  # noqa: PLC0415

    assert bench_warm_start.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert [s["name"] for s in data["scenarios"]] == ["new GPU", "new shape"]
    for s in data["scenarios"]:
        assert set(s["summary"]) == {"plain", "warm"} and len(s["runs"]["warm"]) == len(data["seeds"])
        assert s["warm_configs"] and s["default_over_best"] > 1
        for mode in ("plain", "warm"):
            cell = s["summary"][mode]["3%"]
            assert cell["p10"] <= cell["median"] <= cell["p90"] <= data["budget"] + 1
    # Correlated but not identical GPUs.
    assert 0.5 < data["rank_correlation"] < 1.0
    assert "warm start" in (tmp_path / "results.md").read_text()


def test_synthetic_gpus_differ_in_their_best_config():
    from bench.warm_start import profiles, synthetic_recording  # noqa: PLC0415

    source, target = profiles(0)
    p = problem(16, n=4096, k=4096)  # the figure's problem (a tiny space has one best for both)
    a = synthetic_recording(MATMUL, p, device_for("a100").info, source, "s")
    b = synthetic_recording(MATMUL, p, device_for("h100").info, target, "s")
    best_a = min(a.outcomes, key=lambda c: a.outcomes[c].timing.median_ms)
    best_b = min(b.outcomes, key=lambda c: b.outcomes[c].timing.median_ms)
    assert best_a != best_b and b.outcomes[best_a].timing.median_ms < 1.5 * b.best_ms
