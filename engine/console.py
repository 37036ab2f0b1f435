"""The engine as a terminal program: the offline-first environment and a progress display.

Shared by the CLI (``engine.cli``), the demo (``engine.demo``) and compare's child processes
(``engine.compare``), so that each runs the same way whichever started it.
"""

from __future__ import annotations

import os
import sys

from engine.events import CallbackSink, describe_forgetting


def offline_env() -> None:
    """Offline first (DESIGN §2.6): never reach for the hub unless the user said so."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


SAMPLE_METRICS = ("eval_exact_match", "eval_token_f1")
TRAINER_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second", "exact_match", "token_f1")


def _short(text, n: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def human_sink(stream=None) -> CallbackSink:
    """Progress for a person at a terminal (stderr by default): a tqdm bar plus log lines."""
    stream = stream or sys.stderr
    state = {"bar": None}

    def emit(ev):
        from tqdm import tqdm

        kind = ev["event"]
        if kind == "started":
            state["bar"] = tqdm(total=ev.get("total_steps"), initial=ev.get("resumed_from_step") or 0,
                                unit="step", file=stream, dynamic_ncols=True)
        elif kind == "step" and state["bar"] is not None:
            bar = state["bar"]
            bar.n = ev["step"]
            post = {"loss": f"{ev['loss']:.4f}" if ev.get("loss") is not None else "-"}
            if ev.get("tokens_per_s"):
                post["tok/s"] = f"{ev['tokens_per_s']:.0f}"
            bar.set_postfix(post, refresh=False)
            bar.refresh()
        elif kind in ("log", "warning"):
            msg = ("warning: " if kind == "warning" else "") + ev["message"]
            (state["bar"].write(msg) if state["bar"] is not None else print(msg, file=stream))
        elif kind == "eval":
            extra = "".join(f", {k[5:].replace('_', ' ')} {v:.2f}" for k, v in (ev.get("metrics") or {}).items()
                            if k in SAMPLE_METRICS or k.startswith("eval_") and k[5:] not in TRAINER_METRICS)
            lines = [f"eval loss {ev['eval_loss']:.4f} at step {ev['step']}{extra}"]
            for s in (ev.get("samples") or [])[:2]:  # a taste of what the model says now
                lines.append(f"  {_short(s.get('prompt'))} → {_short(s.get('answer'))}")
            for line in lines:
                (state["bar"].write(line) if state["bar"] is not None else print(line, file=stream))
        elif kind in ("finished", "stopped", "failed"):
            if state["bar"] is not None:
                state["bar"].close()
            if kind == "failed":
                print(f"error: {ev['error']}\nhint: {ev.get('hint', '')}", file=stream)
            else:
                why = f" ({ev['reason']})" if kind == "stopped" and ev.get("reason") else ""
                print(f"{kind}{why}: adapter saved in {ev.get('adapter_dir')}", file=stream)
                if ev.get("hint"):
                    print(f"hint: {ev['hint']}", file=stream)
                if ev.get("forgetting"):
                    print(f"forgetting check: {describe_forgetting(ev['forgetting'])}", file=stream)

    return CallbackSink(emit)
