"""Evaluation: did a run learn its task, and what did it cost the base model?

* ``metrics`` — exact match and token F1 against a reference (SQuAD's), the user metric
  (``eval.metric``: ``module:function`` or an expression);
* ``samples`` — the prompts answered at every evaluation and their answers (``eval`` events'
  ``samples``);
* ``forgetting`` — general-text NLL and greedy-answer agreement, base vs tuned, on the bundled
  general reference (``general``), with the base side cached per base model;
* ``bench`` — lm-evaluation-harness on local tasks, base vs tuned (the optional ``bench`` extra).

Importing this package is cheap: torch and transformers load inside the functions.
"""

from engine.evals.metrics import exact_match, load_metric, normalize_answer, token_f1
from engine.events import describe_forgetting, short_forgetting

__all__ = ["describe_forgetting", "exact_match", "load_metric", "normalize_answer", "short_forgetting", "token_f1"]
