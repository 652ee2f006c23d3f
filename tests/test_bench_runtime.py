"""bench/runtime.py end to end with its smoke sizes (tiny Llama and MiniLM on the CPU, torch
backend): every section written, the figures positive, the tiny model's greedy tokens equal
to transformers', and the full run refused without a GPU."""

import json
import math
import os

import pytest
import torch

pytest.importorskip("transformers")

from bench import runtime as bench_runtime  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared CPUs: intra-op threads only add waits at these sizes
    try:
        out = tmp_path_factory.mktemp("runtime")
        code = bench_runtime.main(["--smoke", "--out", str(out), "--seed", "7"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out, json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def positive(s):
    return s is not None and s["n"] > 0 and 0 < s["p10"] <= s["median"] <= s["p90"] and math.isfinite(s["p90"])


def test_smoke_run_writes_every_section(smoke):
    _, data, md = smoke
    assert data["benchmark"] == "runtime" and data["smoke"] and data["seed"] == 7 and data["run_device"] == "CPU"
    assert data["pending"] is None and "Partial" not in md  # every section reached
    env = data["environment"]
    assert env["device"]["label"] and "torch" in env and "triton" in env and "driver" in env and data["date"]
    assert positive(data["bandwidth"]["gb_per_s"])
    llama = data["llama"]
    assert [r["role"] for r in llama["variants"]] == ["float", "w8", "w4g128"]
    assert [r["variant"] for r in llama["variants"]] == ["fp32:torch", "fp32+w8:torch", "fp32+w4g128:torch"]
    sizes = llama["sizes"]
    for r in llama["variants"]:
        assert r["weight_bytes"] > 0 and r["roofline_tokens_per_s"] > 0
        assert set(r["batches"]) == {"1", "8"}
        for b in r["batches"].values():
            assert positive(b["decode_tokens_per_s"]) and positive(b["prefill_tokens_per_s"])
            assert b["decode_tokens"] == b["batch"] * (sizes["new_tokens"] - 1)
            assert b["prefill_tokens"] == b["batch"] * sizes["prompt_len"]
            assert b["same_tokens_every_rep"]
            assert b["configs"]["backend"] == "torch"
    float_bytes, w8_bytes, w4_bytes = (r["weight_bytes"] for r in llama["variants"])
    assert float_bytes > w8_bytes > w4_bytes
    hf = llama["transformers"]
    assert hf["dtype"] == "float32" and hf["cache"] in ("static", "default") and hf["version"]
    for b in hf["batches"].values():
        assert positive(b["decode_tokens_per_s"]) and positive(b["prefill_tokens_per_s"])
    prof = llama["decode_profile"]  # the float variant's batch-1 step (CPU ops here)
    assert "error" not in prof, prof
    assert prof["variant"] == "fp32:torch" and prof["decode_steps"] == sizes["new_tokens"] - 1
    assert prof["kernels"] and prof["busy_us_per_step"] > 0
    assert prof["step_us"] > 0 and 0 <= prof["outside_kernels_share"] <= 1
    assert "### Where a decode step's time goes" in md and "CPU ops a step" in md
    pdl = llama["pdl"]  # the float variant's batch-1 decode again with INFERTUNE_PDL=1 (a no-op here)
    assert "error" not in pdl, pdl
    assert pdl["variant"] == "fp32:torch" and set(pdl["row"]["batches"]) == {"1"}
    assert pdl["without_pdl"] == llama["variants"][0]["batches"]["1"]["decode_tokens_per_s"]["median"]
    assert pdl["ratio"] == pytest.approx(pdl["decode_tokens_per_s"] / pdl["without_pdl"])
    assert "### Programmatic dependent launch (INFERTUNE_PDL=1)" in md and f"{pdl['ratio']:.3f}x" in md
    assert "INFERTUNE_PDL" not in os.environ  # put back as it was
    goals = data["goals"]
    assert len(goals) == 5 and all(g["met"] in (True, False, None) for g in goals)
    assert all(g["value"] is None or g["value"] > 0 for g in goals)
    # The verdicts are the ones computed from the measurements in the file, not constants.
    assert goals == bench_runtime.goals(llama, data["bandwidth"], data["minilm"])
    assert all(g["met"] is not None for g in goals[:4])
    assert data["memory"]["peak_bytes"] > 0 and data["memory"]["phases"]
    for heading in ("## 1. Copy bandwidth", "## 2. Llama decode and prefill", "## 3. MiniLM embeddings",
                    "## 4. Goals", "## 5. Memory"):
        assert heading in md
    assert "CPU" in md and "p10-p90" in md and "smoke run" in md and "transformers" in md
    assert md.count("met**") >= 4  # goals reported, never asserted


def test_tiny_model_greedy_tokens_equal_transformers(smoke):
    _, data, md = smoke
    check = data["llama"]["cross_check"]
    assert check["variant"] == "fp32:torch"
    assert check["equal"], check
    assert check["tokens"] == data["llama"]["sizes"]["new_tokens"] == len(check["transformers"])
    assert "Cross-check" in md and "equal" in md


def test_minilm_section(smoke):
    _, data, md = smoke
    m = data["minilm"]
    if "skipped" in m:
        if os.environ.get("INFERTUNE_REQUIRE_MODELS", "") not in ("", "0"):
            pytest.fail(f"INFERTUNE_REQUIRE_MODELS=1 but the MiniLM section was skipped: {m['skipped']}")
        assert "Skipped" in md
        pytest.skip(f"MiniLM section skipped: {m['skipped']}")
    assert m["batch"] == 4 and m["tokens_per_text"] == 16 and m["texts"] >= m["batch"]
    assert positive(m["embeddings_per_s"]) and positive(m["sentence_transformers"]["embeddings_per_s"])
    assert m["speedup"] > 0 and m["min_cosine_to_sentence_transformers"] > 0.999
    assert data["goals"][4]["value"] == m["speedup"]
    assert data["goals"][4]["met"] == (m["speedup"] >= bench_runtime.GOAL_MINILM)


def test_made_texts_are_exactly_the_token_count():
    from runtime import store

    if store.model_path("minilm-l6") is None:
        pytest.skip("minilm-l6's files are absent")
    tok = store.load_tokenizer("minilm-l6")
    texts = bench_runtime.make_texts(tok, 5, 128, seed=3)
    assert len(set(texts)) == 5 and all(len(tok.encode(t)) == 128 for t in texts)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the full run only refuses where there is no GPU")
def test_full_run_refuses_without_a_gpu(tmp_path, capsys):
    out = tmp_path / "never"
    assert bench_runtime.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "GPU" in err and "--smoke" in err
    assert not out.exists()


def _decode(tokens_per_s):
    return {"batches": {"1": {"decode_tokens_per_s": {"median": tokens_per_s}}}}


@pytest.mark.parametrize("float_tps,w8_tps,w4_tps,hf_tps,minilm,expect", [
    # roofline: 1000 GB/s over 1e9 weight bytes = 1000 tok/s
    (850.0, 1300.0, 2200.0, 400.0, 1.6, [True, False, True, True, True]),
    (700.0, 1200.0, 1800.0, 400.0, 1.4, [False, True, True, False, False]),
])
def test_goals_from_known_measurements(float_tps, w8_tps, w4_tps, hf_tps, minilm, expect):
    llama = {"variants": [{"role": "float", "variant": "bf16", "weight_bytes": 1e9, **_decode(float_tps)},
                          {"role": "w8", "variant": "bf16+w8", "weight_bytes": 5e8, **_decode(w8_tps)},
                          {"role": "w4g128", "variant": "bf16+w4g128", "weight_bytes": 3e8, **_decode(w4_tps)}],
             "transformers": _decode(hf_tps)}
    goals = bench_runtime.goals(llama, {"gb_per_s": {"median": 1000.0}}, {"speedup": minilm})
    assert [g["met"] for g in goals] == expect
    assert goals[0]["value"] == pytest.approx(float_tps / 1000.0)
    assert goals[1]["value"] == pytest.approx(w8_tps / float_tps)
    assert goals[3]["value"] == pytest.approx(float_tps / hf_tps)
    assert bench_runtime.goals(llama, {"gb_per_s": {"median": 1000.0}}, {})[4]["met"] is None


def test_a_run_cut_short_keeps_what_it_measured(tmp_path, monkeypatch):
    """The GPU kit caps each step: a run stopped inside transformers' figures (here: it
    raises) has already written our variants' figures, marked partial, goals computed."""
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("the step's cap")
    monkeypatch.setattr(bench_runtime, "run_transformers", stopped)
    monkeypatch.setattr(bench_runtime, "SMOKE_VARIANTS", bench_runtime.SMOKE_VARIANTS[:1])
    with pytest.raises(KeyboardInterrupt):
        bench_runtime.main(["--smoke", "--out", str(tmp_path), "--seed", "5", "--skip-minilm",
                            "--no-decode-profile", "--no-pdl"])
    data = json.loads((tmp_path / "results.json").read_text())
    assert "not measured yet" in data["pending"] and data["llama"]["transformers"] is None
    (row,) = data["llama"]["variants"]
    assert positive(row["batches"]["1"]["decode_tokens_per_s"])
    assert data["goals"] == bench_runtime.goals(data["llama"], data["bandwidth"], data["minilm"])
    assert data["goals"][0]["met"] is not None and data["goals"][3]["value"] is None
    md = (tmp_path / "results.md").read_text()
    assert "**Partial:" in md and "transformers: not measured yet" in md and "MiniLM" in md
