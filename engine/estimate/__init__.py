"""VRAM and time estimates: ``estimate(cfg, gpu)`` before a run, ``probe_time(cfg)`` on this machine.

Memory comes from config.json alone: exact parameter counts from a meta-device model
(``counts``), activation bytes measured by tracing the architecture at tiny width and scaled
(``trace``, ``activations``), and the rest by component (``memory``). Importing this package is
cheap; torch loads on first use.
"""

from __future__ import annotations

__all__ = ["Estimate", "estimate", "probe_time", "count_params", "parse_gpu", "detect_gpu"]


def __getattr__(name):
    if name in ("Estimate", "estimate"):
        from engine.estimate import memory

        return getattr(memory, name)
    if name == "probe_time":
        from engine.estimate.timing import probe_time

        return probe_time
    if name == "count_params":
        from engine.estimate.counts import count_params

        return count_params
    if name in ("parse_gpu", "detect_gpu"):
        from engine.estimate import gpus

        return getattr(gpus, name)
    raise AttributeError(name)
