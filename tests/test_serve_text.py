"""infertune/serving/text.py: incremental detokenization never emits text it takes back and
adds up to the whole decode; stop strings cut at the first occurrence (brute force truth)
whatever the chunking; the fallback byte tokenizer and chat template."""

from __future__ import annotations

import random

import pytest

from infertune.serving.text import ByteTokenizer, Detokenizer, StopStrings, chat_prompt


def _random_ids(rng: random.Random, n: int) -> list[int]:
    """Mostly whole UTF-8 characters split into bytes (1-4 bytes each), some placeholders
    (ids >= 256) and some stray continuation bytes: the cases that hold text back."""
    ids: list[int] = []
    while len(ids) < n:
        kind = rng.random()
        if kind < 0.6:
            ids += list(rng.choice(["a", " ", "é", "€", "日", "😀", "\n", "z"]).encode())
        elif kind < 0.8:
            ids.append(rng.randrange(256, 300))
        else:
            ids.append(rng.randrange(0x80, 0x100))
    return ids


@pytest.mark.parametrize("trial", range(5))
def test_detokenizer_pieces_add_up_and_are_final(trial, seed):
    rng = random.Random(seed + trial)
    tok = ByteTokenizer(300)
    ids = _random_ids(rng, rng.randrange(1, 60))
    detok = Detokenizer(tok)
    emitted = ""
    for i in ids:
        emitted += detok.add(i)
        # what was sent is final: it starts the decode of everything so far, and of the whole
        assert tok.decode(ids).startswith(emitted), (seed, ids)
    assert emitted + detok.flush() == tok.decode(ids), (seed, ids)


def test_detokenizer_holds_an_incomplete_character_then_sends_it_whole():
    detok = Detokenizer(ByteTokenizer(300))
    euro = list("€".encode())  # 3 bytes
    assert [detok.add(b) for b in euro] == ["", "", "€"]
    assert detok.add(0xE2) == ""  # the start of another: held
    assert detok.flush() == "\ufffd"  # the end came first: the incomplete rest as U+FFFD


def test_detokenizer_skips_stop_ids_and_shows_placeholders():
    detok = Detokenizer(ByteTokenizer(300), skip={299})
    assert detok.add(ord("a")) + detok.add(280) + detok.add(299) + detok.flush() == "a<280>"


def _brute_force_cut(text: str, stops: list[str]) -> tuple[str, bool]:
    for end in range(len(text) + 1):
        for s in sorted(stops, key=len, reverse=True):
            if text[:end].endswith(s):
                return text[:end - len(s)], True
    return text, False


@pytest.mark.parametrize("trial", range(30))
def test_stop_strings_cut_at_the_first_occurrence_for_any_chunking(trial, seed):
    rng = random.Random(seed * 31 + trial)
    alphabet = "abc"  # small: stop strings and near misses (prefixes) are frequent
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 5))) for _ in range(rng.randrange(1, 5))]
    cut = StopStrings(stops)
    out, i = "", 0
    while i < len(text) and not cut.stopped:
        n = rng.randrange(1, 5)
        out += cut.add(text[i:i + n])
        i += n
    out += cut.flush()
    want, stopped = _brute_force_cut(text, stops)
    assert (out, cut.stopped) == (want, stopped), (seed, text, stops)


def test_stop_strings_hold_a_possible_start_then_release_it():
    cut = StopStrings(["END"])
    assert cut.add("abE") == "ab"
    assert cut.add("N") == ""
    assert cut.add("x") == "ENx"  # not the stop string after all
    assert cut.add("yEN") == "y"
    assert cut.add("D tail") == "" and cut.stopped
    assert cut.flush() == ""


def test_stop_strings_in_one_chunk_cut_where_the_first_one_ends():
    cut = StopStrings(["abcd", "c"])  # "c" ends first, though "abcd" starts first
    assert cut.add("xabcd") == "xab" and cut.stopped
    cut = StopStrings(["c", "bc"])  # both end at the same place: the longer is cut
    assert cut.add("abcd") == "a"


def test_byte_tokenizer_round_trips_text():
    tok = ByteTokenizer(300)
    text = "héllo, 世界 😀"
    assert tok.decode(tok.encode(text)) == text
    assert all(0 <= i < 256 for i in tok.encode(text))


def test_chat_prompt_without_a_template_is_role_lines_then_assistant():
    tok = ByteTokenizer(300)
    ids = chat_prompt(tok, [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "you"}]}])
    assert tok.decode(ids) == "system: be brief\nuser: hi you\nassistant:"
    with pytest.raises(ValueError, match="image_url"):
        chat_prompt(tok, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
