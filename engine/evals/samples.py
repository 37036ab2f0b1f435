"""The prompts a run answers at every evaluation, and their answers.

By default the first ``eval.samples`` held-out examples (their last assistant turn is the
reference, engine.data.heldout_prompts); ``eval.prompts`` replaces them with a list of prompts
or a file. Answers are greedy and short (``eval.max_new_tokens``), through the one generation
path, so the Samples view shows what the model at that step really says.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import ConfigError


def _as_sample(prompt_or_messages, reference: str = "") -> dict:
    if isinstance(prompt_or_messages, list):
        return {"messages": prompt_or_messages, "reference": reference or ""}
    return {"messages": [{"role": "user", "content": str(prompt_or_messages)}], "reference": reference or ""}


def read_prompt_file(path: Path) -> list[dict]:
    """Prompts from a file: .jsonl (``messages`` or ``prompt``, optional ``reference``; a
    ``messages`` list ending in an assistant turn gives its reference), .json (a list of strings
    or such objects) or text (one prompt a line). ConfigError naming eval.prompts and the line."""
    if not path.exists():
        raise ConfigError("eval.prompts", f"file {path} does not exist; give a .jsonl/.txt file or a list "
                          "of prompts")
    text = path.read_text(encoding="utf-8")
    rows: list = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError("eval.prompts", f"{path} line {i}: not valid JSON ({e.msg})") from None
    elif path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("eval.prompts", f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise ConfigError("eval.prompts", f"{path} must hold a list of prompts")
    else:
        return [_as_sample(line.strip()) for line in text.splitlines() if line.strip()]
    out = []
    for i, row in enumerate(rows, 1):
        where = f"{path} {'line' if path.suffix == '.jsonl' else 'item'} {i}"
        if isinstance(row, str):
            out.append(_as_sample(row))
            continue
        if not isinstance(row, dict):
            raise ConfigError("eval.prompts", f"{where}: expected a prompt or an object with messages/prompt")
        ref = str(row.get("reference") or row.get("completion") or row.get("answer") or "")
        if isinstance(row.get("messages"), list) and row["messages"]:
            msgs = [dict(m) for m in row["messages"]]
            if msgs[-1].get("role") == "assistant" and len(msgs) > 1:
                ref = ref or str(msgs[-1].get("content") or "")
                msgs = msgs[:-1]
            out.append(_as_sample(msgs, ref))
        elif row.get("prompt") is not None:
            out.append(_as_sample(str(row["prompt"]), ref))
        else:
            raise ConfigError("eval.prompts", f"{where}: has neither `messages` nor `prompt`")
    return out


def sample_prompts(eval_cfg, data_cfg, seed: int = 42, base_dir: Path | None = None) -> list[dict]:
    """The prompts of a run's samples as ``{"messages", "reference"}`` (at most eval.samples)."""
    n = int(eval_cfg.samples)
    if n <= 0:
        return []
    given = eval_cfg.prompts
    if isinstance(given, list):
        prompts = [_as_sample(p) for p in given if str(p).strip()]
    elif isinstance(given, str) and given.strip():
        p = Path(given).expanduser()
        if not p.is_absolute() and base_dir is not None and not p.exists():
            p = Path(base_dir) / p
        prompts = read_prompt_file(p)
    else:
        from engine.data import heldout_prompts

        prompts = heldout_prompts(data_cfg, n, seed, base_dir)
    return prompts[:n]


def preference_prompts(rows, n: int) -> list[dict]:
    """The first ``n`` held-out rows of a preference run (TRL's columns: ``prompt`` as text or
    messages, with ``chosen`` or KTO's ``completion``) as samples whose reference is the preferred
    answer (for KTO, a completion labelled desirable; an undesirable one has no reference)."""
    out = []
    for row in rows or []:
        if len(out) >= n:
            break
        prompt = row.get("prompt")
        if not prompt:
            continue
        answer = row.get("chosen", row.get("completion") if row.get("label", True) else "")
        if isinstance(answer, list):
            answer = "\n".join(str(t.get("content") or "") for t in answer)
        out.append(_as_sample(prompt, str(answer or "")))
    return out


def prompt_text(messages: list[dict]) -> str:
    """What a sample's prompt shows: its last user turn."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return str(messages[-1].get("content") or "") if messages else ""


def answer_samples(model, tokenizer, prompts: list[dict], max_new_tokens: int) -> list[dict]:
    """``[{prompt, reference, answer}]``: greedy answers of ``model`` to ``prompts``."""
    from engine.inference import GenerationSettings, generate_batch

    if not prompts:
        return []
    answers = generate_batch(model, tokenizer, [p["messages"] for p in prompts],
                             GenerationSettings(max_new_tokens=max_new_tokens))
    return [{"prompt": prompt_text(p["messages"]), "reference": p.get("reference") or "", "answer": a}
            for p, a in zip(prompts, answers)]
