"""Stopping a run at a step boundary: a flag set from anywhere, read by the trainer.

Set by ``stop`` on stdin (the studio), SIGTERM/SIGINT (a terminal, a scheduler) or another rank
(``accelerate launch``); the trainer checks it after every optimizer step, saves the adapter and a
checkpoint, and reports ``stopped`` (LLaMA-Factory's ``should_training_stop`` habit).
"""

from __future__ import annotations

import signal
import sys
import threading


class StopFlag:
    """Set from another thread (stdin reader, signal handler, the studio); read at step ends."""

    def __init__(self):
        self._ev = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stop requested") -> None:
        self.reason = self.reason or reason
        self._ev.set()

    def is_set(self) -> bool:
        return self._ev.is_set()


def stop_requested_anywhere(stop: StopFlag) -> bool:
    """Only rank 0 hears `stop` (stdin, signals); under `accelerate launch` every rank must
    agree to stop at the same step or the others would hang in the next collective."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop.is_set()
    import torch

    device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([1.0 if stop.is_set() else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    # Decide on the agreed value only: a request that arrives on this rank after the all-reduce
    # (the stdin thread) must wait for the next step, or this rank would stop alone and the
    # others would hang (or fail) in their next collective (seen once in six two-rank stops).
    agreed = flag.item() > 0
    if agreed:
        stop.set("stop requested on another rank")
    return agreed


def listen_stdin(stop: StopFlag) -> None:
    """Set ``stop`` when a line ``stop`` (or ``quit``/``q``) arrives on stdin (a daemon thread)."""

    def run():
        try:
            for line in sys.stdin:
                if line.strip().lower() in ("stop", "quit", "q"):
                    stop.set("stop requested")
                    return
        except (OSError, ValueError):
            return

    if sys.stdin is not None and not sys.stdin.closed:
        threading.Thread(target=run, name="stdin-stop", daemon=True).start()


def install_signal_handlers(stop: StopFlag) -> None:
    """SIGTERM and SIGINT set ``stop``; a second Ctrl+C interrupts at once (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C means now
        stop.set(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
