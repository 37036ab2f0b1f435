"""Task metrics of sample answers: exact match, token F1, and a user-supplied metric.

Exact match and token F1 follow the SQuAD v1.1 evaluation script (Rajpurkar et al., 2016,
``evaluate-v1.1.py``): both strings are lower-cased, punctuation and the articles a/an/the are
removed and whitespace is collapsed; F1 is the harmonic mean of the precision and recall of the
bag of tokens. Written here because those are a dozen lines and the ``evaluate`` library would
load a metric script (and may want the network) for them.

A user metric (``eval.metric``) is either ``module:function``, called with ``(answer,
reference)`` (or ``(answer)`` when it takes one argument, like the demo's persona score) and
returning a number, or a Python expression over ``answer`` and ``reference``
(e.g. ``float('ahoy' in answer.lower())``). Like a training script, the run file is the user's
own code: the expression runs with a small set of builtins, not in a sandbox.
"""

from __future__ import annotations

import collections
import importlib
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import ConfigError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_SAFE_BUILTINS = {name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
                  for name in ("abs", "all", "any", "bool", "float", "int", "len", "max", "min", "round",
                               "sorted", "str", "sum", "set", "list", "tuple", "zip")}


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in (text or "").lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the normalised answer equals the normalised reference, else 0.0."""
    return float(normalize_answer(answer) == normalize_answer(reference))


def token_f1(answer: str, reference: str) -> float:
    """F1 of the normalised tokens of ``answer`` against ``reference`` (0.0–1.0); 1.0 when both
    are empty, 0.0 when only one is."""
    a, r = normalize_answer(answer).split(), normalize_answer(reference).split()
    if not a or not r:
        return float(a == r)
    common = collections.Counter(a) & collections.Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(a), same / len(r)
    return 2 * precision * recall / (precision + recall)


@dataclass
class UserMetric:
    """A compiled eval.metric: ``name`` (reported as ``eval_<name>``) and ``fn(answer, reference)``."""

    name: str
    spec: str
    fn: Callable[[str, str], float]

    def __call__(self, answer: str, reference: str) -> float:
        try:
            value = float(self.fn(answer, reference))
        except Exception as e:  # the user's metric failing must name itself, not look like ours
            raise ConfigError("eval.metric", f"{self.spec} failed on an answer: {type(e).__name__}: {e}") from None
        return value


_MODULE_FN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _positional(fn) -> int:
    """How many positional arguments ``fn`` takes (2 when it cannot be told)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def load_metric(spec: str | None) -> UserMetric | None:
    """Compile ``eval.metric`` (None when empty). Raises ConfigError naming eval.metric when the
    module or function cannot be found or the expression is not valid Python."""
    spec = (spec or "").strip()
    if not spec:
        return None
    if _MODULE_FN.match(spec):
        module, _, name = spec.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
        except ImportError as e:
            raise ConfigError("eval.metric", f"cannot import {module}: {e}", spec) from None
        except AttributeError:
            raise ConfigError("eval.metric", f"{module} has no function {name}", spec) from None
        if not callable(fn):
            raise ConfigError("eval.metric", f"{spec} is not a function", spec)
        if _positional(fn) < 2:  # a metric of the answer alone, like the demo's persona_score
            one = fn
            return UserMetric(name, spec, lambda answer, reference: one(answer))
        return UserMetric(name, spec, fn)
    try:
        code = compile(spec, "eval.metric", "eval")
    except SyntaxError as e:
        raise ConfigError("eval.metric", f"neither module:function nor a valid Python expression ({e.msg})",
                          spec) from None
    safe = {"__builtins__": _SAFE_BUILTINS, "re": re, "math": math}

    def fn(answer: str, reference: str):
        return eval(code, safe, {"answer": answer, "reference": reference})  # noqa: S307 - the user's own run file

    return UserMetric("metric", spec, fn)


def score(samples: list[dict], metric: UserMetric | None = None) -> dict[str, float]:
    """Mean metrics over ``samples`` ({prompt, reference, answer}): ``exact_match`` and ``token_f1``
    over the samples that have a reference, and the user metric's ``<name>`` over all. Keys
    without any sample to average are left out."""
    out: dict[str, float] = {}
    refs = [s for s in samples if (s.get("reference") or "").strip()]
    if refs:
        out["exact_match"] = sum(exact_match(s["answer"], s["reference"]) for s in refs) / len(refs)
        out["token_f1"] = sum(token_f1(s["answer"], s["reference"]) for s in refs) / len(refs)
    if metric is not None and samples:
        out[metric.name] = sum(metric(s["answer"], s.get("reference") or "") for s in samples) / len(samples)
    return out
