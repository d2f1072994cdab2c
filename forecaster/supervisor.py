"""`forecaster up`'s process supervisor: start children, prefix their logs, restart the ones that crash, stop them
all on Ctrl-C or SIGTERM.

Each child runs in its own process group (a worker forks RQ's scheduler beside it), so stopping a child stops
everything it started, and a Ctrl-C in the terminal reaches only the supervisor, which then stops the children in
order: the front door first (no new requests), the background last (running jobs get a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

# A child that crashes is restarted after 1 s, then 2, 4… up to 30 s; a child that ran a minute starts over at 1 s.
RESTART_DELAYS_S = (1, 2, 4, 8, 16, 30)
HEALTHY_AFTER_S = 60.0
READY_TIMEOUT_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    stop_grace_s: float = 10.0  # after SIGTERM, how long before SIGKILL
    process: subprocess.Popen | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    next_start_at: float = 0.0
    # Infrastructure the other children need (the embedded Redis) sets `ready`: it is started before the rest and
    # waited for until `ready()` is true. Its place in the list is its place in the stop order (put it last).
    ready: Callable[[], bool] | None = field(default=None, repr=False)
    before_start: Callable[[], None] | None = field(default=None, repr=False)  # runs before every (re)start


class Supervisor:
    def __init__(self, children: Sequence[Child], *, env: dict[str, str] | None = None, out: TextIO = sys.stdout,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.env = env
        self.out = out
        self.clock = clock
        self._stop = threading.Event()
        self._print_lock = threading.Lock()
        self._width = max((len(c.name) for c in self.children), default=2)

    # -- output --------------------------------------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{name:<{self._width}} | {line.rstrip()}\n")
            self.out.flush()

    def _pump(self, child: Child, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.say(child.name, raw.decode(errors="replace"))
        stream.close()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        if child.before_start is not None:
            child.before_start()
        child.process = subprocess.Popen(child.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        child.started_at = self.clock()
        threading.Thread(target=self._pump, args=(child, child.process.stdout), daemon=True).start()
        self.say("up", f"started {child.name} (pid {child.process.pid})")

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self, *, poll_s: float = 0.2) -> int:
        """Start every child and keep them running until asked to stop; then stop them. Returns the exit code."""
        for child in sorted(self.children, key=lambda c: c.ready is None):  # stable: infrastructure first
            self._start(child)
            if child.ready is not None and not self._wait_until_ready(child):
                self.say("up", f"{child.name} was not ready within {READY_TIMEOUT_S:.0f} s; stopping")
                self.stop_all()
                return 1
        while not self._stop.wait(poll_s):
            for child in self.children:
                self._watch(child)
        self.stop_all()
        return 0

    def _wait_until_ready(self, child: Child) -> bool:
        deadline = self.clock() + READY_TIMEOUT_S
        while not child.ready():
            if child.process.poll() is not None or self.clock() > deadline or self._stop.is_set():
                return False
            time.sleep(0.02)
        return True

    def _watch(self, child: Child) -> None:
        now = self.clock()
        if child.process is None:
            if now >= child.next_start_at:
                self._start(child)
            return
        code = child.process.poll()
        if code is None:
            if now - child.started_at >= HEALTHY_AFTER_S:
                child.failures_in_a_row = 0
            return
        self._reap_group(child)
        delay = RESTART_DELAYS_S[min(child.failures_in_a_row, len(RESTART_DELAYS_S) - 1)]
        child.failures_in_a_row += 1
        child.restarts += 1
        child.process = None
        child.next_start_at = now + delay
        self.say("up", f"{child.name} exited with code {code}; restarting in {delay} s")

    def stop_all(self) -> None:
        """Stop children in the order given: SIGTERM to each group, wait out its grace, then SIGKILL."""
        for child in self.children:
            if child.process is None:
                continue
            self.say("up", f"stopping {child.name}…")
            _signal_group(child.process, signal.SIGTERM)
            try:
                code = child.process.wait(timeout=child.stop_grace_s)
            except subprocess.TimeoutExpired:
                self.say("up", f"{child.name} did not stop within {child.stop_grace_s:.0f} s; killing it")
                _signal_group(child.process, signal.SIGKILL)
                code = child.process.wait()
            self._reap_group(child)
            self.say("up", f"{child.name} stopped (code {code})")
            child.process = None

    @staticmethod
    def _reap_group(child: Child) -> None:
        """Whatever the child left in its group (RQ's forked scheduler) goes with it."""
        if child.process is not None:
            _signal_group(child.process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass
