"""`infertune autotune --model NAME --traffic FILE`: the whole path on planted timings (JSON,
bucket maps and records stored, run directory valid, report section), the runtime serving
each M from its bucket through DatabaseSource, one real run through the worker, and bad input
as one line with exit 2."""

from __future__ import annotations

import json
import random

import pytest
import triton

import kernels
from infertune.cli import main
from infertune.traffic_tuning import TableMeasurer
from kernels.device import current_device
from kernels.spec import Config
from reports import document, html
from reports.load import load_runs
from runtime.configs import LaunchConfigs
from tuner.bucket_map import BucketMap
from tuner.database import DatabaseSource, open_database
from tuner.keys import device_class, kernel_source_hash, problem_family

DEVICE = current_device()


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["autotune", *args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture
def planted(monkeypatch):
    """Timings from a table: per kernel a random speed per config, latency growing with M."""
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    speed: dict[tuple[str, Config], float] = {}

    def latency(kernel, problem, config):
        m = problem.dims.get("M", problem.dims.get("T"))
        factor = speed.setdefault((kernel, config), rng.uniform(1.0, 3.0))
        return (1 + m / 32) * factor * (1.0 if config["BLOCK_M"] <= max(1, m // 2) else 1.5)

    made = []

    def make(device, settings, **_):
        made.append(TableMeasurer(latency, device))
        return made[-1]
    monkeypatch.setattr("infertune.cli.autotune_traffic.make_measurer", make)
    return made


def test_cli_on_planted_timings_stores_maps_and_writes_a_run(tmp_path, capsys, planted):
    traffic = tmp_path / "traffic.json"
    traffic.write_text(json.dumps({"lengths": [3, 7, 4, 30, 3, 3, 12, 5, 60, 2], "max_batch": 2}))
    db, out = tmp_path / "t.db", tmp_path / "run"
    code, stdout, err = run_cli(["layernorm", "--model", "minilm-l6", "--traffic", str(traffic), "--buckets", "2", "--dtype",
                                 "fp32", "--trials", "3", "--retime", "0", "--db", str(db), "--out", str(out),
                                 "--json"], capsys)
    assert code in (0, None), err
    data = json.loads(stdout)
    groups = data["groups"]
    # minilm's layernorms: one family, 1 + 6 + 6 launches per pass (embedding, attention and MLP norms)
    (group,) = groups
    assert group["kernel"] == "layernorm" and group["launches_per_pass"] == 13
    assert group["roles"] == ["attn_norm", "embed_norm", "mlp_norm"]
    # passes: [3,7] [4,30] [3,3] [12,5] [60,2] -> 14, 60, 6, 24, 120 tokens
    assert data["traffic"]["histogram"] == {"6": 1, "14": 1, "24": 1, "60": 1, "120": 1}
    for g in groups:
        e = g["expected_ms"]
        assert e["traffic"] <= e["pow2"] + 1e-9 or g["pow2_buckets"] > 2
        assert 1 <= len(g["buckets"]) <= 2 and g["buckets"][-1]["high"] == 120
    totals = data["expected_ms"]
    assert totals["traffic"] == pytest.approx(sum(g["expected_ms"]["traffic"] for g in groups))
    with open_database(str(db)) as database:
        maps = database.bucket_maps()
        assert {(m.kernel, m.family) for m in maps} == {(g["kernel"], g["family"]) for g in groups}
        assert data["bucket_maps_written"] == 1 and data["records_written"] == len(database.records())
    run = load_runs([out])
    assert run[0].data["traffic"]["model"] == "minilm-l6"
    doc = document.build(run)
    section = next(s for s in doc.sections if s.id == "traffic")
    assert any(getattr(b, "title", "").endswith("expected latency per forward pass") for b in section.blocks)
    assert "Traffic-aware buckets" in html.render(doc)


def test_the_table_fits_80_columns(tmp_path, capsys, planted):
    traffic = tmp_path / "t.csv"
    traffic.write_text("tokens,count\n1,50\n3,30\n13,10\n40,5\n257,5\n")
    code, stdout, err = run_cli(["rmsnorm", "--model", "smollm2-135m", "--traffic", str(traffic), "--dtype", "fp32",
                                 "--trials", "3", "--retime", "0", "--db", str(tmp_path / "t.db"), "--out",
                                 str(tmp_path / "run")], capsys)
    assert code in (0, None), err
    table = stdout[:stdout.index("traffic buckets:")]
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert "per forward pass" in table and "[1/" in err  # a progress line per group


def test_runtime_serves_each_m_from_its_bucket(tmp_path):
    spec = kernels.get("gelu")
    ms = [1, 2, 3, 4, 13, 24, 25, 300, 512, 513, 5000]
    problems = {m: spec.problem({"M": m, "N": 1536}, "fp32", {"approximate": "none"}) for m in ms}
    valid = set.intersection(*(set(spec.valid_configs(p, DEVICE)) for p in problems.values()))
    configs = tuple(random.sample(sorted(valid, key=str), 3))  # valid at every M asked, so none falls through
    problem = problems[1]
    cls = device_class(DEVICE)
    bucket_map = BucketMap(kernel="gelu", device_name=cls.name, capability=cls.capability,
                           family=problem_family(spec, problem), source_hash=kernel_source_hash(spec),
                           triton_version=triton.__version__, uppers=(3, 24, 512),
                           configs=tuple(dict(c) for c in configs), created="2025-01-01T00:00:00+00:00")
    with open_database(str(tmp_path / "t.db")) as database:
        database.put_bucket_map(bucket_map)
        source = DatabaseSource(database)
        for m, p in problems.items():
            got = source.resolve(spec, p, DEVICE)
            assert got.source == "bucket" and got.config == configs[bucket_map.bucket_of(m)], (m, got)
        # after prepare, a launch is a dict hit: the database is not asked again
        launch = LaunchConfigs(source, DEVICE)
        wanted = [("gelu", spec.problem({"M": m, "N": 1536}, "fp32", {"approximate": "none"})) for m in (2, 30)]
        launch.prepare(wanted)
        database.lookup = None  # any further lookup would fail
        assert [launch.resolve(spec, p, DEVICE).config for _, p in wanted] == [configs[0], configs[2]]
        assert not launch.unplanned


def test_a_real_run_through_the_worker(tmp_path, capsys, monkeypatch):
    for k, v in {"INFERTUNE_WARMUP_MS": "0", "INFERTUNE_REP_MS": "0", "INFERTUNE_MIN_REPS_CPU": "2"}.items():
        monkeypatch.setenv(k, v)
    traffic = tmp_path / "t.csv"
    traffic.write_text("m,count\n1,3\n5,2\n")
    db = tmp_path / "t.db"
    code, stdout, err = run_cli(["gelu", "--model", "minilm-l6", "--traffic", str(traffic), "--buckets", "2",
                                 "--dtype", "fp32", "--trials", "1", "--retime", "0", "--db", str(db), "--out",
                                 str(tmp_path / "run"), "--json"], capsys)
    assert code in (0, None), err
    (group,) = json.loads(stdout)["groups"]
    assert all(v is not None and v > 0 for v in group["expected_ms"].values())
    with open_database(str(db)) as database:
        (stored,) = database.bucket_maps()
        assert stored.extra["interpreter"] is DEVICE.interpreter


@pytest.mark.parametrize("text,extra,message", [
    ("", [], "is empty"),
    ("tokens,count\n13,-4\n", [], "negative"),
    ("tokens,count\n13,nan\n", [], "'nan'"),
    ("tokens,count\n13,4\n13,5\n", [], "duplicate token count M=13"),
    ("tokens,count\n\u0661\u0663,4\n", [], "non-ASCII digits"),
    ("tokens,count\n13,2.5\n", [], "not a whole number"),
    ('{"format": "other/1", "histogram": {"1": 1}}', [], "unknown traffic format"),
    ("a,b\n1,2\n", [], "unknown traffic format"),
    ("tokens,count\n13,4\n", ["--max-batch", "4"], "applies to raw request lengths only"),
    ("length\n13\n", [], "give the max batch"),
    ("length\n9000\n", ["--max-batch", "2", "--model", "smollm2-135m"], "exceeds the model's"),
    ("tokens,count\n13,4\n", ["--buckets", "65"], "--buckets must be from 1 to 64"),
    ("tokens,count\n13,4\n", ["attention"], "launches no bucketed attention"),
])
def test_bad_input_is_one_line_and_exit_2(text, extra, message, tmp_path, capsys):
    traffic = tmp_path / "t.txt"
    traffic.write_text(text)
    model = [] if "--model" in extra else ["--model", "minilm-l6"]
    code, _, err = run_cli([*model, "--traffic", str(traffic), *extra, "--db", str(tmp_path / "t.db")], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "t.db").exists()  # refused before anything was written


def test_missing_traffic_file_is_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["--model", "minilm-l6", "--traffic", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and "cannot read the traffic file" in err and len(err.strip().splitlines()) == 1
