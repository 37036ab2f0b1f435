"""A jobs table for testing the helper process itself (``python -m studio.job_server tests.studio.wire_jobs``)."""

from __future__ import annotations

import os
import time


def count_to(state, n: int, delay: float = 0.0) -> dict:
    """Reports each step; stops early when interrupted."""
    done = 0
    for i in range(1, n + 1):
        if state.is_interruption_requested():
            return {"done": done, "interrupted": True}
        state.set_status(f"step {i}")
        state.set_progress_value(i, n)
        state.set_partial_result({"i": i})
        done = i
        time.sleep(delay)
    return {"done": done, "interrupted": False, "pid": os.getpid()}


def user_mistake(state, path: str) -> None:
    from engine.data.errors import DataError

    raise DataError("not valid JSON", file=path, line=3, hint="Fix the line.")


def bug(state) -> None:
    raise RuntimeError("an internal fault")


def unsendable(state) -> object:
    return object()


def crash(state) -> None:
    os._exit(7)


def echo(state, value):
    return value


JOBS = {f.__name__: f for f in (count_to, user_mistake, bug, unsendable, crash, echo)}
