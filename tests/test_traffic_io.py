"""tuner/traffic_io.py: traffic files in every accepted form give the passes the runtime would
run (raw lengths batched in arrival order, each batch padded to its longest, checked against
a direct simulation on fresh random requests); every malformed file is one TrafficError line."""

from __future__ import annotations

import json
import random

import pytest

from tuner.traffic_io import (
    FORMAT,
    TrafficError,
    batch_passes,
    parse_traffic,
    read_traffic,
)


def test_histogram_forms_agree(tmp_path):
    want = {1: 5, 13: 40, 512: 2}
    texts = ["tokens,count\n1,5\n13,40\n512,2\n", "M , Count\n13,40\n\n1,5\n0512,2\n7,0\n",
             json.dumps({"format": FORMAT, "histogram": {"13": 40, "1": 5, "512": 2}}),
             json.dumps({"1": 5, "13": 40, "512": 2, "7": 0})]
    for i, text in enumerate(texts):
        path = tmp_path / f"t{i}"
        path.write_text(text)
        traffic = read_traffic(path)
        assert traffic.kind == "histogram" and traffic.histogram() == want, text
        assert set(traffic.passes) == {(m, 1) for m in want} and traffic.total == 47


def simulate(lengths, max_batch):
    """The runtime's batching written out plainly: embed/generate pad each batch to its longest."""
    passes = {}
    batch = []
    for n in lengths + [None]:
        if n is not None:
            batch.append(n)
        if batch and (len(batch) == max_batch or n is None):
            key = (len(batch) * max(batch), len(batch))
            passes[key] = passes.get(key, 0) + 1
            batch = []
    return passes


@pytest.mark.parametrize("trial", range(10))
def test_raw_lengths_batch_in_arrival_order(trial):
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng = random.Random(seed)
    lengths = [rng.choice([3, 7, 13, 40, 200, 257]) for _ in range(rng.randint(1, 60))]
    max_batch = rng.randint(1, 9)
    csv_text = "request,length\n" + "".join(f"r{i},{n}\n" for i, n in enumerate(lengths))
    from_csv = parse_traffic(csv_text, max_batch=max_batch)
    from_json = parse_traffic(json.dumps({"lengths": lengths, "max_batch": max_batch}))
    assert from_csv.passes == from_json.passes == simulate(lengths, max_batch), seed
    assert from_csv.requests == len(lengths) and from_csv.total == -(-len(lengths) // max_batch)


def test_padding_is_counted():
    # 2 batches: [3, 10] -> 2 x 10 = 20 tokens; [4] -> 4 tokens (arrival order, not sorted)
    assert parse_traffic('{"lengths": [3, 10, 4], "max_batch": 2}').passes == {(20, 2): 1, (4, 1): 1}
    # the flag beats the file
    assert parse_traffic('{"lengths": [3, 10, 4], "max_batch": 2}', max_batch=3).passes == {(30, 3): 1}


def test_truncation_and_refusal():
    t = batch_passes([300, 5], 2, max_length=256)
    assert t.passes == {(512, 2): 1} and t.truncated == 1
    with pytest.raises(TrafficError, match="a request of 300 tokens exceeds the model's 256"):
        batch_passes([300, 5], 2, max_length=256, truncate=False)


@pytest.mark.parametrize("text,match", [
    ("", "is empty"),
    ("   \n\n", "is empty"),
    ("tokens,count\n", "no rows"),
    ("tokens,count\n13,-4\n", "negative"),
    ("tokens,count\n-13,4\n", "negative"),
    ("tokens,count\n13,1.5\n", "not a whole number"),
    ("tokens,count\n13,nan\n", "'nan'"),
    ("tokens,count\n\u0661\u0663,4\n", "non-ASCII digits"),
    ("tokens,count\n13,4\n13,5\n", "duplicate token count M=13"),
    ("tokens,count\n13,4\n013,5\n", "duplicate token count M=13"),
    ("tokens,count\n0,4\n", "out of range"),
    ("tokens,count\n13,0\n", "no pass with a positive count"),
    ("tokens,count\n13\n", "1 fields, the header has 2"),
    ("foo,bar\n1,2\n", "unknown traffic format"),
    ("length\n12\nabc\n", "not a whole number"),
    ("length\n12\n", "give the max batch"),
    ("length\n", "no request lengths"),
    ('{"13": 4, "13": 5}', "appears twice"),
    ('{"13": 4, "013": 5}', "duplicate token count M=13"),
    ('{"13": NaN}', "NaN is not a number"),
    ('{"13": 4.5}', "not a whole number"),
    ('{"13": -1}', "negative"),
    ('{"13": true}', "not a whole number"),
    ('{"x1": 4}', "not a whole number"),
    ('{"foo": 4}', "unknown traffic format"),
    ('{}', "empty histogram"),
    ('[1, 2]', "unknown traffic format"),
    ('{"format": "other/2", "histogram": {"1": 1}}', "unknown traffic format"),
    ('{"format": "infertune-traffic/1"}', "needs \"histogram\" or \"lengths\""),
    ('{"histogram": {"1": 1}, "max_batch": 4}', "applies to raw"),
    ('{"histogram": {"1": 1}, "lengths": [1]}', "not both"),
    ('{"histogram": {"1": 1}, "extra": 1}', "unknown key 'extra'"),
    ('{"lengths": [4, 0], "max_batch": 2}', "out of range"),
    ('{"lengths": "4,5", "max_batch": 2}', "must be a list"),
    ('{"lengths": [4], "max_batch": 0}', "out of range"),
    ('{"lengths": [4], "max_batch": 2.5}', "not a whole number"),
    ('{"13": 4', "not valid JSON"),
])
def test_malformed_input_is_one_line(text, match):
    with pytest.raises(TrafficError, match=match) as info:
        parse_traffic(text)
    assert "\n" not in str(info.value)


def test_max_batch_with_a_histogram_and_bad_files(tmp_path):
    with pytest.raises(TrafficError, match="applies to raw request lengths only"):
        parse_traffic("tokens,count\n1,1\n", max_batch=4)
    with pytest.raises(TrafficError, match="--max-batch must be a positive integer"):
        parse_traffic("length\n1\n", max_batch=0)
    with pytest.raises(TrafficError, match="cannot read"):
        read_traffic(tmp_path / "missing.csv")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TrafficError, match="not UTF-8"):
        read_traffic(tmp_path / "bin")
