"""The one task mechanism (studio/tasks.py): progress, partial results, cancel, and the result or
the error delivered by signal in the UI thread — the same for a thread and a helper process."""

from __future__ import annotations

import sys
import threading

import pytest

from engine.data.errors import DataError
from studio import tasks
from studio.messages import TaskError, is_user_error, plain_message
from studio.process import HelperProcess

TIMEOUT_MS = 60_000


def _record(task):
    """Every signal the task emits, with whether it arrived in the UI (main) thread."""
    seen = []

    def on(name):
        return lambda *a: seen.append((name, a, threading.current_thread() is threading.main_thread()))

    for name in ("sig_status", "sig_progress", "sig_partial", "sig_result", "sig_error", "sig_finished"):
        getattr(task, name).connect(on(name))
    return seen


# ---- threads -----------------------------------------------------------------------------------------

def _count(state, n):
    assert threading.current_thread() is not threading.main_thread()
    for i in range(1, n + 1):
        state.set_status(f"step {i}")
        state.set_progress_value(i, n)
        state.set_partial_result(i)
    return n * 10


def test_thread_task_reports_and_delivers_in_the_ui_thread(qtbot):
    task = tasks.start_thread(_count, 3)
    seen = _record(task)
    with qtbot.waitSignal(task.sig_finished, timeout=TIMEOUT_MS):
        pass
    assert all(in_ui for _, _, in_ui in seen)
    names = [n for n, _, _ in seen]
    assert names[-2:] == ["sig_result", "sig_finished"] and "sig_error" not in names
    assert [a for n, a, _ in seen if n == "sig_status"] == [("step 1",), ("step 2",), ("step 3",)]
    assert [a for n, a, _ in seen if n == "sig_progress"] == [(1, 3), (2, 3), (3, 3)]
    assert [a[0] for n, a, _ in seen if n == "sig_partial"] == [1, 2, 3]
    assert [a[0] for n, a, _ in seen if n == "sig_result"] == [30]
    assert not task.running


def _fail(state, exc):
    raise exc


@pytest.mark.parametrize("exc,user", [
    (DataError("not valid JSON", file="t.jsonl", line=3, hint="Fix the line."), True),
    (RuntimeError("boom"), False),
])
def test_thread_task_error_arrives_as_a_plain_task_error(qtbot, exc, user):
    task = tasks.start_thread(_fail, exc)
    with qtbot.waitSignal(task.sig_error, timeout=TIMEOUT_MS) as blocker:
        pass
    err = blocker.args[0]
    assert isinstance(err, TaskError) and is_user_error(err) is user and task.error is err
    if user:
        assert err.message == str(exc) and err.hint == "Fix the line." and err.error_type == "DataError"
    else:
        assert err.message == "Something went wrong (RuntimeError): boom" and plain_message(err) == err.message


def _until_interrupted(state, started: threading.Event, saw: threading.Event):
    started.set()
    while not state.is_interruption_requested():
        state.set_partial_result("tick")
        threading.Event().wait(0.01)
    saw.set()
    return "stopped"


def test_cancel_stops_the_work_and_drops_its_result(qtbot):
    started, saw = threading.Event(), threading.Event()
    task = tasks.start_thread(_until_interrupted, started, saw)
    seen = _record(task)
    assert started.wait(10)
    task.cancel()
    assert saw.wait(10), "the function saw the interruption"
    qtbot.wait(200)
    assert not [n for n, _, _ in seen if n in ("sig_result", "sig_error", "sig_finished")]
    assert task.cancelled and not task.running


def test_request_interruption_still_delivers_the_early_result(qtbot):
    started, saw = threading.Event(), threading.Event()
    task = tasks.start_thread(_until_interrupted, started, saw)
    assert started.wait(10)
    with qtbot.waitSignal(task.sig_result, timeout=TIMEOUT_MS) as blocker:
        task.request_interruption()
    assert blocker.args == ["stopped"]


def test_a_deleted_owner_gets_nothing(qtbot):
    from PySide6.QtCore import QObject

    owner = QObject()
    started, saw = threading.Event(), threading.Event()
    task = tasks.start_thread(_until_interrupted, started, saw, parent=owner)
    seen = _record(task)
    assert started.wait(10)
    owner.deleteLater()
    qtbot.wait(50)
    task.interrupt.set()  # the function ends and reports; nobody is there to hear it
    assert saw.wait(10)
    qtbot.wait(200)
    assert not [n for n, _, _ in seen if n == "sig_result"]


# ---- a helper process --------------------------------------------------------------------------------

@pytest.fixture
def server():
    """A helper serving the test jobs; shut down (process ended, reader thread joined) after each test."""
    h = HelperProcess("test", [sys.executable, "-m", "studio.job_server", "tests.studio.wire_jobs"])
    yield h
    h.shutdown()


def test_process_task_reports_and_delivers_in_the_ui_thread(qtbot, server):
    task = tasks.submit_to(server, "count_to", 3)
    seen = _record(task)
    with qtbot.waitSignal(task.sig_finished, timeout=TIMEOUT_MS):
        pass
    assert all(in_ui for _, _, in_ui in seen)
    assert [a for n, a, _ in seen if n == "sig_progress"] == [(1, 3), (2, 3), (3, 3)]
    assert [a[0] for n, a, _ in seen if n == "sig_partial"] == [{"i": 1}, {"i": 2}, {"i": 3}]
    result = [a[0] for n, a, _ in seen if n == "sig_result"][0]
    assert result["done"] == 3 and result["pid"] == server.process.pid


def test_process_errors_keep_the_user_error_flag_and_hint(qtbot, server):
    task = tasks.submit_to(server, "user_mistake", "data/train.jsonl")
    with qtbot.waitSignal(task.sig_error, timeout=TIMEOUT_MS) as blocker:
        pass
    err = blocker.args[0]
    assert err.user_error and err.error_type == "DataError" and err.hint == "Fix the line."
    assert err.message == "data/train.jsonl line 3: not valid JSON. Fix the line."
    task = tasks.submit_to(server, "bug")
    with qtbot.waitSignal(task.sig_error, timeout=TIMEOUT_MS) as blocker:
        pass
    assert not blocker.args[0].user_error and "RuntimeError" in blocker.args[0].message
    task = tasks.submit_to(server, "unsendable")
    with qtbot.waitSignal(task.sig_error, timeout=TIMEOUT_MS) as blocker:
        pass
    assert "TypeError" in blocker.args[0].message  # reported, not a hang or a dead helper


def test_process_cancel_reaches_the_running_job(qtbot, server):
    pid = server.process.pid if server.process else None
    task = tasks.submit_to(server, "count_to", 100_000, 0.01)
    with qtbot.waitSignal(task.sig_partial, timeout=TIMEOUT_MS):
        pass
    with qtbot.waitSignal(task.sig_result, timeout=TIMEOUT_MS) as blocker:
        task.request_interruption()
    assert blocker.args[0]["interrupted"] and blocker.args[0]["done"] < 100_000
    dropped = tasks.submit_to(server, "count_to", 100_000, 0.01)
    seen = _record(dropped)
    with qtbot.waitSignal(dropped.sig_partial, timeout=TIMEOUT_MS):
        pass
    dropped.cancel()
    after = tasks.submit_to(server, "echo", {"still": "alive"})  # runs once the cancelled job has ended
    with qtbot.waitSignal(after.sig_result, timeout=TIMEOUT_MS) as blocker:
        pass
    assert blocker.args == [{"still": "alive"}]
    assert not [n for n, _, _ in seen if n in ("sig_result", "sig_finished")]
    assert pid is None or server.process.pid == pid  # the same helper served them all


def test_interrupting_a_job_that_waits_its_turn_still_delivers_its_early_result(qtbot, server):
    """A request interrupted before it is sent (it waits behind another job) still runs and
    replies at once: it is not dropped, or its owner (the Playground's Generate) waits forever."""
    busy = tasks.submit_to(server, "count_to", 100_000, 0.01)
    with qtbot.waitSignal(busy.sig_partial, timeout=TIMEOUT_MS):
        pass
    waiting = tasks.submit_to(server, "count_to", 5, 0.0)
    waiting.request_interruption()  # still queued in the client: the helper runs `busy`
    with qtbot.waitSignal(waiting.sig_result, timeout=TIMEOUT_MS) as blocker:
        busy.request_interruption()
    assert blocker.args[0] == {"done": 0, "interrupted": True}
    assert waiting.done and not waiting.running


def test_newer_request_with_the_same_key_replaces_an_unsent_one(qtbot, server):
    busy = tasks.submit_to(server, "count_to", 20, 0.02)
    first = tasks.submit_to(server, "echo", 1, key="k")
    second = tasks.submit_to(server, "echo", 2, key="k")
    got = []
    first.sig_result.connect(got.append)
    second.sig_result.connect(got.append)
    with qtbot.waitSignal(second.sig_result, timeout=TIMEOUT_MS):
        pass
    qtbot.waitUntil(lambda: not busy.running, timeout=TIMEOUT_MS)
    assert got == [2]


def test_a_crashed_helper_is_an_error_and_restarts(qtbot, server):
    task = tasks.submit_to(server, "crash")
    with qtbot.waitSignal(task.sig_error, timeout=TIMEOUT_MS) as blocker:
        pass
    assert "stopped unexpectedly" in blocker.args[0].message
    again = tasks.submit_to(server, "echo", "back")
    with qtbot.waitSignal(again.sig_result, timeout=TIMEOUT_MS) as blocker:
        pass
    assert blocker.args == ["back"]


def test_latest_job_emits_only_the_newest_result(qtbot):
    from studio.tasks import LatestJob

    def slow_echo(state, value, delay):
        threading.Event().wait(delay)
        return value

    job = LatestJob(slow_echo, delay_ms=0)
    got = []
    job.sig_result.connect(got.append)
    job.run_now("old", 0.5)
    job.run_now("new", 0.0)
    qtbot.waitUntil(lambda: bool(got) and not job.busy, timeout=TIMEOUT_MS)
    qtbot.wait(700)  # the old one has finished meanwhile, and is dropped
    assert got == ["new"]
