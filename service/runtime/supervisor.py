"""The `serve --workers N` parent once its children run: a thin supervisor.

`service.runtime.processes` imports the whole service, forks the HTTP children (so they share
its module pages) and then replaces itself with this module (`os.execv`, same pid, so the
children stay its children). What is left of the parent imports the standard library only:
it no longer holds a copy of the application (issue 11, memory: about 70 MB RSS before, a
Python interpreter's 10-ish after).

    python -P -m service.runtime.supervisor serve --metrics-dir DIR --log-level L
                                         --log-format F [--stopping] PID [PID ...]

(`serve`, an argument of its own, keeps the process recognisable as the server to whatever
reads its command line: the image's HEALTHCHECK probes HTTP when pid 1's has it.)

It waits for a SIGINT or SIGTERM, or for a child to exit on its own; then it sends SIGTERM to
every child still running, gives each STOP_GRACE seconds (none after a second signal), kills
what is left, removes the metrics folder and exits 0 only on a clean stop (a signal, and
every child gone with 0 or by our SIGTERM). `--stopping`: a signal came before the exec
(the parent's handler took it). Signals that arrive during the exec wait blocked (the
parent blocked them; a blocked signal stays pending across `execv`) until the handlers here
are in place.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from types import FrameType

STOP_GRACE = 15.0
LOGGER = "service.runtime.supervisor"  # run as __main__ (python -m), logged by its name
POLL = 0.2  # seconds between looks for a child that exited on its own
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CLEAN_CODES = {0, -signal.SIGTERM}  # a child still starting up dies of our SIGTERM: clean too


class Log:
    """The service's log line shape (service.observability.logging), without its imports."""

    def __init__(self, level: str, log_format: str) -> None:
        self.threshold = LEVELS.get(level, 20)
        self.json = log_format == "json"

    def __call__(self, level: str, event: str, **fields: object) -> None:
        if LEVELS[level] < self.threshold:
            return
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        line = {**fields, "event": event, "level": level, "logger": LOGGER, "timestamp": stamp}
        if self.json:
            text = json.dumps(line, default=str)
        else:
            rest = " ".join(f"{k}={v}" for k, v in fields.items())
            text = f"{stamp} [{level:<8}] {event:<30} {rest}"
        print(text, file=sys.stderr, flush=True)


class _Stop:
    """A first signal asks the children to stop; a second one kills them at once."""

    def __init__(self, requested: bool) -> None:
        self.requested = requested
        self.now = False


def supervise(pids: list[int], metrics_dir: str, log: Log, *, stopping: bool = False) -> int:
    """Wait for a stop or a child's exit, stop the children, clean up; the exit status."""
    stop = _Stop(stopping)

    def on_signal(signum: int, _: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.requested:
            log("warning", "processes.stopping_now", signal=name)
            stop.now = True
        else:
            log("info", "processes.stopping", signal=name)
        stop.requested = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent's exec
    codes: dict[int, int] = {}
    try:
        while not stop.requested:
            exited = _reap(pids, codes)
            if exited:
                log("error", "processes.child_exited", exit_codes=_codes(pids, codes))
                break
            time.sleep(POLL)
    finally:
        _stop(pids, codes, stop)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    clean = stop.requested and all(codes.get(pid) in CLEAN_CODES for pid in pids)
    return 0 if clean else 1


def _reap(pids: list[int], codes: dict[int, int]) -> bool:
    """Record the status of any child that has exited; True if one did."""
    exited = False
    for pid in pids:
        if pid in codes:
            continue
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            codes[pid] = os.waitstatus_to_exitcode(status)
            exited = True
    return exited


def _stop(pids: list[int], codes: dict[int, int], stop: _Stop) -> None:
    """SIGTERM to every child still running, STOP_GRACE each to go (none once a second
    signal came), then SIGKILL."""
    for pid in pids:
        if pid not in codes:
            # one that exited since the last look is reaped below
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for pid in pids:
        if pid in codes:
            continue
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and not stop.now and not _reap([pid], codes):
            time.sleep(0.05)  # polling a child's exit: waitpid has no timeout
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            codes[pid] = os.waitstatus_to_exitcode(status)


def _codes(pids: list[int], codes: dict[int, int]) -> list[int | None]:
    return [codes.get(pid) for pid in pids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authledger-supervisor")
    parser.add_argument("command", choices=("serve",), help="what the children run")
    parser.add_argument("--metrics-dir", required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="json", choices=("json", "console"))
    parser.add_argument("--stopping", action="store_true")
    parser.add_argument("pids", nargs="+", type=int)
    args = parser.parse_args(argv)
    log = Log(args.log_level, args.log_format)
    return supervise(args.pids, args.metrics_dir, log, stopping=args.stopping)


if __name__ == "__main__":
    sys.exit(main())
