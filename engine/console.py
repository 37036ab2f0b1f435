"""The engine as a terminal program: the offline-first environment and readable progress.

Shared by the CLI (``engine.cli``), the demo (``engine.demo``) and compare's child processes
(``engine.compare``), so that each runs the same way whichever started it.
"""

from __future__ import annotations

import os
import sys

from engine.events import CallbackSink


def offline_env() -> None:
    """Offline first (DESIGN §2.6): never reach for the hub unless the user said so."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def human_duration(seconds) -> str:
    """A duration as a person says it: 4.2 s, 42 s, 3.3 min, 25 min, 2 h 10 min ("—" unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min" if seconds < 600 else f"{seconds / 60:.0f} min"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _count(n) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def step_line(ev: dict) -> str:
    """One readable line for a ``step`` event (units as the event contract states them)."""
    parts = [f"step {ev.get('step')}/{ev.get('total_steps')}"]
    if ev.get("loss") is not None:
        parts.append(f"loss {ev['loss']:.4f}")
    if ev.get("lr") is not None:
        parts.append(f"lr {ev['lr']:.2e}")
    if ev.get("grad_norm") is not None:
        parts.append(f"grad norm {ev['grad_norm']:.3f}")
    if ev.get("tokens_per_s"):
        parts.append(f"{ev['tokens_per_s']:.0f} tokens/s")
    if ev.get("eta_s") is not None:
        parts.append(f"{human_duration(ev['eta_s'])} left")
    return "  ".join(parts)


def event_line(ev: dict) -> str | None:
    """The readable text of any event (None: nothing to say). Never a traceback: a failure is its
    message and what to do; the traceback of the project's own faults stays in the event."""
    kind = ev.get("event")
    if kind == "started":
        resumed = f", resuming at step {ev['resumed_from_step']}" if ev.get("resumed_from_step") else ""
        return (f"Training {ev.get('method')} on {ev.get('device')}: {ev.get('total_steps')} steps, "
                f"{ev.get('train_examples')} training examples, {_count(ev.get('trainable_params'))} of "
                f"{_count(ev.get('total_params'))} parameters trainable{resumed}. Run folder: {ev.get('run_dir')}")
    if kind == "step":
        return step_line(ev)
    if kind == "eval":
        loss = ev.get("eval_loss")
        return f"eval loss {loss:.4f} at step {ev.get('step')}" if loss is not None else None
    if kind == "checkpoint":
        return f"checkpoint at step {ev.get('step')}: {ev.get('path')}"
    if kind == "log":
        return ev.get("message")
    if kind == "warning":
        return f"warning: {ev.get('message')}"
    if kind in ("finished", "stopped"):
        m = ev.get("metrics") or {}
        losses = [f"{k.replace('_', ' ')} {m[k]:.4f}" for k in ("final_loss", "eval_loss") if m.get(k) is not None]
        why = f" ({ev['reason']})" if kind == "stopped" and ev.get("reason") else ""
        return (f"{kind}{why} at step {ev.get('step')}" + (f", {', '.join(losses)}" if losses else "")
                + f". Adapter: {ev.get('adapter_dir')}")
    if kind == "failed":
        hint = ev.get("hint")
        return f"error: {ev.get('error')}" + (f"\nhint: {hint}" if hint else "")
    return None


def human_sink(stream=None) -> CallbackSink:
    """Training progress as readable lines on ``stream`` (stdout by default), terminal or not:
    one line per event (``event_line``); on a terminal the steps redraw one progress bar
    instead of a line each. ``peft-studio train run.yaml > log.txt`` thus writes a readable log."""
    stream = stream or sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    state = {"bar": None}

    def write(text: str) -> None:
        if state["bar"] is not None:
            state["bar"].write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def emit(ev):
        kind = ev["event"]
        if kind == "started" and tty:
            from tqdm import tqdm

            write(event_line(ev))
            state["bar"] = tqdm(total=ev.get("total_steps"), initial=ev.get("resumed_from_step") or 0,
                                unit="step", file=stream, dynamic_ncols=True)
            return
        if kind == "step" and state["bar"] is not None:
            bar = state["bar"]
            bar.n = ev["step"]
            post = {"loss": f"{ev['loss']:.4f}" if ev.get("loss") is not None else "-"}
            if ev.get("tokens_per_s"):
                post["tok/s"] = f"{ev['tokens_per_s']:.0f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()
            return
        if kind in TERMINAL and state["bar"] is not None:
            state["bar"].close()
            state["bar"] = None
        line = event_line(ev)
        if line:
            write(line)

    return CallbackSink(emit)


TERMINAL = ("finished", "stopped", "failed")
