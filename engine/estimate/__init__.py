"""VRAM and time estimates: ``estimate(cfg, gpu)`` before a run, ``probe_time(cfg)`` on this machine.

Memory comes from config.json alone: exact parameter counts from a meta-device model
(``counts``), activation bytes measured by tracing the architecture at tiny width and scaled
(``trace``, ``activations``), and the rest by component (``memory``). What differs between
methods comes from their declared capabilities and estimator hooks (``engine.methods.spec``),
never from their names. Importing this package is cheap; torch loads on first use.
"""

from engine.estimate.counts import count_params
from engine.estimate.gpus import detect_gpu, parse_gpu
from engine.estimate.memory import Estimate, count_params_on, estimate
from engine.estimate.timing import probe_time

__all__ = ["Estimate", "estimate", "probe_time", "count_params", "count_params_on", "parse_gpu", "detect_gpu"]
