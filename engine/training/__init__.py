"""Training a run: ``train(cfg)`` (setup → main → fit, engine.training.run) on transformers'
Trainer, reporting typed events (engine.events) and honouring a stop flag at step boundaries.

* ``run`` — setup → main → fit, RunResult, checkpoints and resume;
* ``trainer`` — the Trainer subclass and the event callback;
* ``stop`` — StopFlag, stdin and signal listeners;
* ``arguments`` — TrainingArguments and optimizers;
* ``hints`` — what to do after a failure;
* ``build`` — the model exactly as a run uses it (shared with the time probe);
* ``loss`` — the chunked/fused loss; ``speed`` — the attention and embedding levers.
"""

from engine.training.hints import hint_for
from engine.training.resume import changed_fixed_fields
from engine.training.run import ADAPTER_DIR, EVENTS_FILE, RUN_FILE, RunResult, find_checkpoint, train
from engine.training.stop import StopFlag, install_signal_handlers

__all__ = ["ADAPTER_DIR", "EVENTS_FILE", "RUN_FILE", "RunResult", "StopFlag", "changed_fixed_fields",
           "find_checkpoint", "hint_for", "install_signal_handlers", "train"]
