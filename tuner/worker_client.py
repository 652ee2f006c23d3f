"""The client of the isolated worker process (`python -m tuner.worker`, tuner/worker.py):
start it, send one JSON request per line, read its reply within a timeout, and replace it
when it dies or hangs. The timing evaluator (tuner.worker.WorkerEvaluator) and the compile
pool (tuner/precompile.py) each drive their processes through a `Worker`."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kernels.spec import Problem

from . import outcome as oc
from .outcome import Outcome

ROOT = Path(__file__).resolve().parent.parent


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    return {"shape": dict(problem.shape), "dtype": problem.dtype, "options": dict(problem.options)}


class WorkerLost(Exception):
    """The worker died or hung; `outcome` is the failed trial to record."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


# Starting a worker imports torch, triton and the kernels: about 2 s alone, several times
# that on a loaded machine. It is waited for apart from the trial, whose timeout must not
# be spent on imports.
STARTUP_TIMEOUT_S = 180.0


class Worker:
    """One worker process, started on first use and replaced after a crash or a timeout."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._buffer = b""
        self.started = 0  # processes started so far

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self._stderr = tempfile.TemporaryFile()
        # A session of its own: Ctrl-C reaches the tuner, which decides what to keep.
        self._proc = subprocess.Popen([sys.executable, "-m", "tuner.worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                      start_new_session=True)
        self._buffer = b""
        self.started += 1
        try:
            self._read_reply(STARTUP_TIMEOUT_S, "worker did not start")
        except WorkerLost:
            self.close()
            raise

    def ensure_started(self) -> None:
        """Start the process now if it is not running (raises WorkerLost if it cannot start)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()

    def request(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait up to `timeout_s` for its reply.

        Raises WorkerLost (with the failed outcome) when the worker dies or times out.
        """
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerLost(self._lost_outcome()) from None
        return self._read_reply(timeout_s, "timeout")

    def _read_reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        """The next JSON line from the worker within `timeout_s`; WorkerLost if it dies or
        stays silent (then it is killed)."""
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerLost(Outcome.failed(oc.TIMEOUT, f"{what}: no result after {timeout_s:g} s; worker replaced"))
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerLost(self._lost_outcome())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _lost_outcome(self) -> Outcome:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        how = "did not exit"
        if code is not None:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        tail = self._stderr_tail()
        self.close()
        return Outcome.failed(oc.CRASHED, f"crashed: worker {how}; worker replaced" + (f" ({tail})" if tail else ""))

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - 2000))
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:200] if lines else ""

    def close(self) -> None:
        """Stop the worker process (killed if it does not leave on closing its stdin)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                    proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
