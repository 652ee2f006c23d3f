"""The thread both serving workers (runtime/engine.py's Engine, runtime/embed_batcher.py's
EmbedBatcher) run on: started once, stopped by a flag under one condition, and with the
worker's config source active on that thread (kernels.config_source is per thread)."""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod

from kernels.config_source import ConfigSource, using_config_source


class Worker(ABC):
    """Subclasses set `name` and implement `_serve()`, which returns when `_stopping` is set
    (checked under `_cond`; `_halt` notifies it)."""

    name = "infertune-worker"

    def __init__(self, config_source: ConfigSource | None) -> None:
        self.config_source = config_source
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run on a background thread until stop() (a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _halt(self, timeout: float) -> None:
        """Ask the thread to end and wait up to `timeout` s for it."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        source = self.config_source
        with using_config_source(source) if source is not None else contextlib.nullcontext():
            self._serve()

    @abstractmethod
    def _serve(self) -> None:
        """The thread's loop (Engine: scheduler steps; EmbedBatcher: batches)."""
