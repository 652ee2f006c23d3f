"""Who runs a trial, and whether it still can: the owner of a RUNNING trial of a stored study.

A tuner killed with its process (SIGKILL, OOM killer, a lost node) leaves its trial RUNNING
in the study. Every trial the search is about to run carries its owner (`OWNER_ATTR`: host,
boot, pid namespace, pid and the pid's start time) and, while it runs, a heartbeat
(`HEARTBEAT_ATTR`, epoch seconds) written by a thread of the owning process. A RUNNING trial
is abandoned when:

- its owner is on this machine (same host, boot and pid namespace) and its pid is dead, a
  zombie, or now names another process (another start time): known at once;
- its owner is elsewhere and its heartbeat is older than `heartbeat_stale_s`;
- it carries no owner (a tuner from before owners were recorded, or killed between its
  ask and writing the owner) and it started more than `running_stale_s` ago.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial
from sqlalchemy import exc as sa_exc

OWNER_ATTR = "owner"
HEARTBEAT_ATTR = "heartbeat"


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of `pid` from /proc, or None."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    """A process, as another process on the same or another machine can check it."""

    host: str
    boot: str | None        # /proc/sys/kernel/random/boot_id: a rebooted host is another machine
    pid_ns: str | None      # "pid:[4026531836]": containers sharing a hostname have their own pids
    pid: int
    pid_start: str | None   # /proc/<pid>/stat start time: a reused pid is another process

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        stat = _proc_stat(pid)
        try:
            pid_ns = os.readlink("/proc/self/ns/pid")
        except OSError:
            pid_ns = None
        return cls(host=socket.gethostname(), boot=_read("/proc/sys/kernel/random/boot_id"), pid_ns=pid_ns,
                   pid=pid, pid_start=stat[1] if stat else None)

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, trial: FrozenTrial) -> Owner | None:
        data = trial.user_attrs.get(OWNER_ATTR)
        if not isinstance(data, dict):
            return None
        try:
            return cls(host=str(data["host"]), boot=data.get("boot"), pid_ns=data.get("pid_ns"),
                       pid=int(data["pid"]), pid_start=data.get("pid_start"))
        except (KeyError, TypeError, ValueError):
            return None

    def same_machine(self, other: Owner) -> bool:
        """Whether `other`'s pid can be checked from this process (same host, boot, pid namespace)."""
        return (self.host, self.boot, self.pid_ns) == (other.host, other.boot, other.pid_ns)


def pid_gone(owner: Owner) -> str | None:
    """Why `owner` (a process on this machine) is no longer running, or None if it is."""
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return f"pid {owner.pid} on {owner.host} is dead"
    except PermissionError:
        pass  # alive, another user's
    stat = _proc_stat(owner.pid)
    if stat is None:
        return None  # no /proc here: the signal check is all there is
    if stat[0] in ("Z", "X"):
        return f"pid {owner.pid} on {owner.host} is dead (zombie)"
    if owner.pid_start is not None and stat[1] != owner.pid_start:
        return f"pid {owner.pid} on {owner.host} is dead (the pid now names another process)"
    return None


def abandoned_reason(trial: FrozenTrial, me: Owner, *, now: float, heartbeat_stale_s: float,
                     running_stale_s: float) -> str | None:
    """Why the RUNNING `trial` is abandoned (its owner is gone), or None while it may still run.
    Pure but for the pid check of an owner on this machine."""
    owner = Owner.of(trial)
    if owner is not None and owner.same_machine(me):
        if owner.pid == me.pid:
            return None
        gone = pid_gone(owner)
        return f"owner {gone}" if gone else None
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if owner is not None and isinstance(beat, (int, float)):
        age = now - float(beat)
        return f"no heartbeat from pid {owner.pid} on {owner.host} for {age:.0f} s" if age > heartbeat_stale_s else None
    if trial.datetime_start is not None:
        age = now - trial.datetime_start.timestamp()
        if age > running_stale_s:
            return f"running for {age:.0f} s with no owner recorded"
    return None


def claim(trial: optuna.Trial, me: Owner) -> None:
    """Write `me` as the owner of the just-asked `trial`, with a first heartbeat."""
    trial.set_user_attr(OWNER_ATTR, me.to_attr())
    trial.set_user_attr(HEARTBEAT_ATTR, time.time())


class Heartbeat:
    """A daemon thread that writes the time into `HEARTBEAT_ATTR` of this process's RUNNING
    trials every `interval_s` (`add` once a trial is claimed, `discard` once it is told)."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._trials: dict[int, optuna.Trial] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="infertune-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, trial: optuna.Trial) -> None:
        with self._lock:
            self._trials[trial.number] = trial

    def discard(self, number: int) -> None:
        with self._lock:
            self._trials.pop(number, None)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trials = list(self._trials.values())
            for trial in trials:
                try:
                    trial.set_user_attr(HEARTBEAT_ATTR, time.time())
                except UpdateFinishedTrialError:
                    pass  # told meanwhile
                except sa_exc.OperationalError:
                    pass  # storage busy (an SQLite lock): the next beat tries again, well within the stale limit

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
