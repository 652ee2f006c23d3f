"""`infertune serve` on the command line: a port in use, a bad flag or an unknown model is one
line and exit 2; a real start prints its URL, answers, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from infertune.cli import main


def _run(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err = _run(capsys, "serve", "--model", "smollm2-synth", "--port", str(port))
    assert code == 2
    assert err.strip() == f"error: port {port} on 127.0.0.1 is in use; give another --port (0 picks a free one)"


@pytest.mark.parametrize("argv, words", [
    (["--model", "no-such-model", "--port", "0"], "unknown model"),
    (["--model", "smollm2-synth", "--port", "0", "--max-batch", "0"], "--max-batch"),
    (["--model", "smollm2-synth", "--port", "70000"], "--port"),
    (["--model", "smollm2-synth", "--port", "0", "--variant", "fp9"], "fp9"),
    (["--model", "smollm2-synth", "--host", "", "--port", "0"], "--host"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    code, err = _run(capsys, "serve", *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_serve_starts_answers_and_stops_on_ctrl_c():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "infertune", "serve", "--model", "smollm2-synth", "--variant",
                             "fp32:torch", "--port", "0", "--max-batch", "1", "--max-len", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no URL line within 60 s"
        line = proc.stdout.readline()
        assert line.startswith("infertune serve: http://127.0.0.1:") and "smollm2-synth" in line and "fp32:torch" in line
        base = line.split()[2].removesuffix("/v1")
        with urllib.request.urlopen(base + "/health", timeout=10) as r:
            assert json.load(r) == {"status": "ok"}
        request = urllib.request.Request(base + "/v1/completions", method="POST",
                                         data=json.dumps({"model": "smollm2-synth", "prompt": "hi",
                                                          "max_tokens": 2}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert json.load(r)["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
