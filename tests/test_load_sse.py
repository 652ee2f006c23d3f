"""profilers/serving/sse.py: the same events whatever way the bytes are split."""

from __future__ import annotations

import random

import pytest

from profilers.serving.sse import Event, SSEError, SSEParser

STREAM = ("\ufeff: a comment first\n"
          "data: {\"choices\": [{\"text\": \" h\u00e9llo \u4e16\u754c \U0001f600\"}]}\n\n"
          "event: update\r\n"
          "data: line one\r\n"
          "data:line two\r\n\r\n"
          ": keep-alive\r\r"
          "id: 7\n"
          "retry: 100\n"
          "data: {\"x\": 1}\r\r"
          "\n\n\n"
          "data: [DONE]\n").encode()
EXPECTED = [Event("{\"choices\": [{\"text\": \" h\u00e9llo \u4e16\u754c \U0001f600\"}]}"),
            Event("line one\nline two", "update"), Event("{\"x\": 1}"), Event("[DONE]")]


def parse(pieces) -> list[Event]:
    parser = SSEParser()
    out: list[Event] = []
    for piece in pieces:
        out += parser.feed(piece)
    return out + parser.close()


def test_whole_stream():
    assert parse([STREAM]) == EXPECTED


def test_split_at_every_byte_boundary():
    for cut in range(len(STREAM) + 1):
        assert parse([STREAM[:cut], STREAM[cut:]]) == EXPECTED, f"split at byte {cut}"


def test_split_at_every_pair_of_boundaries(seed):
    rng = random.Random(seed)
    for _ in range(300):
        a, b = sorted(rng.sample(range(len(STREAM) + 1), 2))
        assert parse([STREAM[:a], STREAM[a:b], STREAM[b:]]) == EXPECTED, f"cuts {a}, {b}"


def test_one_byte_at_a_time():
    assert parse([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_cr_then_lf_in_the_next_read_is_one_line_ending():
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r\n") == [Event("a")]


def test_oversized_line_is_an_error():
    parser = SSEParser(max_event_bytes=64)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 100)
    parser = SSEParser(max_event_bytes=64)
    with pytest.raises(SSEError):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 20 + b"\n")


def test_invalid_utf8_is_replaced_not_raised():
    assert parse([b"data: \xff\xfe ok\n\n"]) == [Event("\ufffd\ufffd ok")]
