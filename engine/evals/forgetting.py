"""The forgetting check: what a fine-tune cost the base model, measured offline.

Two figures, each for the base and the tuned model, on the bundled general reference
(engine.evals.general, resources/general):

* **general-text NLL** — the mean negative log-likelihood per token (nats) of the first
  ``eval.forgetting_passages`` passages, plain text without a chat template, up to
  ``MAX_TOKENS`` tokens each; reported as the relative change, "general-text NLL +x%";
* **answer agreement** — greedy answers (through the one generation path, at most
  ``eval.forgetting_max_new_tokens`` tokens) to the first ``eval.forgetting_prompts`` general
  prompts; a prompt counts as changed when the tuned answer differs from the base answer after
  whitespace is collapsed: "answers changed on y of N general prompts".

The base figures depend only on the base model, the device kind and these settings, so they
are computed once and cached under the cache folder (``<cache>/forgetting/<key>.json``); every
later run on the same base reads them. The result is the ``forgetting`` dict of the
``finished`` event: ``general_nll_base``, ``general_nll_tuned`` (nats per token),
``changed_answers``, ``n_prompts``, and ``n_passages``, ``nll_change_pct``.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import atomic, paths
from engine.evals import general
from engine.events import describe_forgetting as describe
from engine.events import short_forgetting as short

__all__ = ["Figures", "Settings", "base_key", "base_side", "cache_path", "cached_base", "compare", "describe",
           "general_answers", "general_nll", "measure", "short", "store_base"]

MAX_TOKENS = 192      # tokens per passage (the bundled ones are 60–110 tokens for common tokenizers)
NLL_BATCH = 4         # passages per forward: bounded logits memory (batch × tokens × vocabulary)
CACHE_VERSION = 1


@dataclass
class Settings:
    """How much of the general reference to use (eval.forgetting_* fields)."""

    passages: int = 64
    prompts: int = 16
    max_new_tokens: int = 32

    @classmethod
    def of(cls, eval_cfg) -> Settings:
        return cls(eval_cfg.forgetting_passages, eval_cfg.forgetting_prompts, eval_cfg.forgetting_max_new_tokens)


@dataclass
class Figures:
    """One model's side: ``nll`` (nats per token, None when no passages), ``tokens`` scored, the
    greedy ``answers`` to the general prompts, and ``seconds`` spent."""

    nll: float | None
    tokens: int
    answers: list[str]
    seconds: float = 0.0


def general_nll(model, tokenizer, texts: list[str], batch_size: int = NLL_BATCH) -> tuple[float | None, int]:
    """(mean NLL per predicted token in nats, tokens predicted) of ``model`` on ``texts``.

    Each text is tokenized as plain text (the tokenizer's own special tokens, no chat template),
    truncated to MAX_TOKENS; the loss is the model's own causal-LM loss with padding labelled
    -100, so prompt-learning methods (whose peft forward prepends virtual tokens and pads the
    labels to match) are scored on exactly the same tokens."""
    import torch

    if not texts:
        return None, 0
    total, count = 0.0, 0
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=MAX_TOKENS).to(device)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            if n == 0:
                continue
            with torch.no_grad():
                out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
            total += float(out.loss) * n   # the loss is the mean over the batch's predicted tokens
            count += n
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return (total / count if count else None), count


def general_answers(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
    """Greedy answers to the general prompts through the one generation path."""
    from engine.inference import GenerationSettings, generate_batch

    if not conversations:
        return []
    return generate_batch(model, tokenizer, conversations, GenerationSettings(max_new_tokens=max_new_tokens))


def measure(model, tokenizer, settings: Settings) -> Figures:
    """Both figures of one model (the base or the tuned one)."""
    import time

    t0 = time.perf_counter()
    nll, tokens = general_nll(model, tokenizer, general.passages(settings.passages))
    answers = general_answers(model, tokenizer, general.prompts(settings.prompts), settings.max_new_tokens)
    return Figures(nll, tokens, answers, time.perf_counter() - t0)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def compare(base: Figures, tuned: Figures, settings: Settings) -> dict:
    """The ``forgetting`` dict of the finished event from the two sides."""
    n = min(len(base.answers), len(tuned.answers))
    changed = sum(not _same(a, b) for a, b in zip(base.answers[:n], tuned.answers[:n]))
    out = {"general_nll_base": base.nll, "general_nll_tuned": tuned.nll, "changed_answers": changed,
           "n_prompts": n, "n_passages": settings.passages if base.nll is not None else 0,
           "nll_change_pct": None}
    if base.nll and tuned.nll is not None:
        out["nll_change_pct"] = 100.0 * (tuned.nll - base.nll) / base.nll
    return out


# ---- the base side, cached per base model ---------------------------------------------------------

def _weights_stamp(folder: Path) -> list:
    out = []
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        if name.endswith((".safetensors", ".bin", ".json", ".gguf")):
            st = (folder / name).stat()
            out.append([name, st.st_size, int(st.st_mtime)])
    return out


def base_key(model_cfg, quantization: str | None, device: str, settings: Settings) -> str:
    """The cache key of a base model's figures: the model's files (path, sizes, times), how it is
    loaded (dtype, quantization), the device kind, the settings and the bundled text itself."""
    from engine.models import resolve_source

    src = resolve_source(model_cfg.name_or_path, getattr(model_cfg, "offline", True))
    folder = Path(src.path)
    ident = {"v": CACHE_VERSION, "path": str(folder.resolve()) if folder.exists() else src.path,
             "gguf": src.gguf_file, "files": _weights_stamp(folder), "dtype": model_cfg.dtype,
             "quantization": quantization, "device": device, "settings": asdict(settings),
             "text": general.fingerprint()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def cache_path(key: str) -> Path:
    return paths.cache_dir() / "forgetting" / f"{key}.json"


def cached_base(key: str) -> Figures | None:
    """The cached base figures for ``key``, or None."""
    p = cache_path(key)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return Figures(d["nll"], int(d["tokens"]), list(d["answers"]), float(d.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_base(key: str, figures: Figures) -> None:
    atomic.write_text(cache_path(key), json.dumps(asdict(figures), ensure_ascii=False))


@contextmanager
def base_side(model, spec=None):
    """Inside: ``model`` computes as its base. A method's own ``disable`` hook when it has one
    (engine.methods.spec), else peft's ``disable_adapter()`` for a peft model (adapter layers off,
    virtual prompts not prepended); otherwise the model is used as it is (methods that train the
    base's own tensors are the base until they have trained)."""
    disable = getattr(spec, "disable", None) if spec is not None else None
    if disable is not None:
        ctx = disable(model)
    elif callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config"):
        ctx = model.disable_adapter()
    else:
        ctx = nullcontext()
    with ctx:
        yield model


def _device(model):
    dev = getattr(model, "device", None)
    return dev if dev is not None else next(model.parameters()).device
