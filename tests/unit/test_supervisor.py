"""The `serve --workers N` supervisor (service/runtime/supervisor.py) with real child processes.

The children here are `sleep` and `sh` processes of this test's own, which is all the
supervisor needs of them: its pids to wait for and signal. The end-to-end path (`serve
--workers 2` exec'ing it) is tests/integration/test_serve_processes.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import pytest

from service.runtime import supervisor
from service.runtime.supervisor import Log, supervise


@contextmanager
def _children(*argvs: list[str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(argv) for argv in argvs]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield procs
    finally:
        for sig, handler in handlers.items():  # supervise installs its own
            signal.signal(sig, handler)
        for proc in procs:
            if proc.poll() is None:  # not reaped by the supervisor: ours to end
                proc.kill()
                proc.wait()
            proc.returncode = proc.returncode if proc.returncode is not None else 0


def _lines(err: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.getvalue().splitlines()]


def test_a_stop_before_the_exec_stops_every_child_cleanly(tmp_path: Path) -> None:
    """`--stopping` (a signal the parent took before the exec): each child gets SIGTERM at
    once, the metrics folder goes, and a stop by our SIGTERM is a clean one (0)."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    with _children(["sleep", "60"], ["sleep", "60"]) as procs:
        status = supervise([p.pid for p in procs], str(metrics), Log("info", "json"), stopping=True)
        assert status == 0
        assert all(not Path(f"/proc/{p.pid}").exists() for p in procs)  # reaped: no zombie
    assert not metrics.exists()


def test_a_child_exiting_on_its_own_stops_the_rest_with_status_1(tmp_path: Path) -> None:
    """One child exits (status 3) while the other runs: logged with every child's status at
    that moment (the other's none yet), the other stopped, status 1."""
    err = io.StringIO()
    with (
        _children(["sh", "-c", "exit 3"], ["sleep", "60"]) as procs,
        redirect_stderr(err),
    ):
        status = supervise([p.pid for p in procs], str(tmp_path / "m"), Log("info", "json"))
        assert not Path(f"/proc/{procs[1].pid}").exists()  # stopped and reaped
    assert status == 1
    [exited] = [line for line in _lines(err) if line["event"] == "processes.child_exited"]
    assert exited["exit_codes"] == [3, None]
    assert exited["logger"] == "service.runtime.supervisor"
    assert exited["level"] == "error"


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that ignores SIGTERM is killed once STOP_GRACE has passed, and that is no
    clean stop (status 1)."""
    monkeypatch.setattr(supervisor, "STOP_GRACE", 0.3)
    ignoring = ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
    with _children(ignoring) as procs:
        # the shell must have set its trap before our SIGTERM: wait for its first sleep
        _wait_for_a_child_of(procs[0].pid)
        status = supervise(
            [procs[0].pid], str(tmp_path / "m"), Log("warning", "json"), stopping=True
        )
    assert status == 1


def test_a_second_signal_kills_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second signal during the grace (here 60 s) kills what is left at once."""
    monkeypatch.setattr(supervisor, "STOP_GRACE", 60.0)
    ignoring = ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
    err = io.StringIO()
    with _children(ignoring) as procs, redirect_stderr(err):
        _wait_for_a_child_of(procs[0].pid)
        # the second signal, while supervise waits out the grace (the first came before it)
        second = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        started = time.monotonic()
        second.start()
        try:
            status = supervise(
                [procs[0].pid], str(tmp_path / "m"), Log("info", "json"), stopping=True
            )
        finally:
            second.cancel()
            second.join()
        assert time.monotonic() - started < 10
    assert status == 1  # killed: no clean stop
    assert [x["event"] for x in _lines(err)] == ["processes.stopping_now"]


def _wait_for_a_child_of(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return
        time.sleep(0.01)  # polling /proc: the shell gives no other sign
    raise AssertionError("the shell never started its loop")
