"""Text generation for the demo, the playground and `peft-studio chat`.

Prompts go through the chat template; sampling is seeded per call so that two models given
the same prompt and seed draw comparable samples (base vs tuned side by side).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from engine.data import chat_template_for


@dataclass
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0      # 0: greedy
    top_p: float = 1.0
    seed: int = 0


def build_prompt(tokenizer, messages: list[dict]) -> str:
    template = chat_template_for(tokenizer)  # the same template the data was rendered with
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         chat_template=template)


def _gen_kwargs(tokenizer, s: GenerationSettings) -> dict:
    kw = dict(max_new_tokens=s.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
              eos_token_id=tokenizer.eos_token_id)
    if s.temperature and s.temperature > 0:
        kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kw


def generate_batch(model, tokenizer, conversations: list[list[dict]], settings: GenerationSettings | None = None,
                   batch_size: int = 16) -> list[str]:
    """Answers for many prompts at once (left-padded batches: much faster on the CPU)."""
    import torch

    settings = settings or GenerationSettings()
    prompts = [build_prompt(tokenizer, c) for c in conversations]
    out: list[str] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    try:
        model.eval()
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            torch.manual_seed(settings.seed)
            with torch.no_grad():
                gen = model.generate(**enc, **_gen_kwargs(tokenizer, settings))
            for row in gen[:, enc["input_ids"].shape[1]:]:
                out.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
    return out


def stream(model, tokenizer, messages: list[dict], settings: GenerationSettings | None = None,
           cancel: threading.Event | None = None) -> Iterator[str]:
    """Yield text pieces as they are generated (the playground shows tokens as they come)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    enc = tokenizer(build_prompt(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
    enc = enc.to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    # Set when the consumer stops iterating early (closes the generator): the generation thread
    # must stop too, before the caller changes the model (e.g. switches adapters) under it.
    abandoned = threading.Event()

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return abandoned.is_set() or bool(cancel is not None and cancel.is_set())

    errors: list[BaseException] = []

    def run():
        try:
            torch.manual_seed(settings.seed)
            with torch.no_grad():
                model.generate(**enc, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Cancel()]),
                               **_gen_kwargs(tokenizer, settings))
        except BaseException as e:  # surfaced to the consumer below
            errors.append(e)
            streamer.end()

    th = threading.Thread(target=run, daemon=True, name="generate")
    th.start()
    try:
        yield from streamer
    finally:
        abandoned.set()
        th.join()
    if errors:
        raise errors[0]


def greedy_ids(model, tokenizer, messages: list[dict], max_new_tokens: int = 32,
               stop_ids: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Greedy decoding of one conversation through the same prompt and settings as ``stream``.

    Returns (prompt token ids, generated token ids); generation ends after ``max_new_tokens`` or
    on one of ``stop_ids`` (default: the tokenizer's EOS), which is then the last id. Used to
    compare other runtimes (llama.cpp, a GGUF file) token by token with the model.
    """
    import torch

    prompt = build_prompt(tokenizer, messages)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    kw = _gen_kwargs(tokenizer, GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0))
    if stop_ids:
        kw["eos_token_id"] = list(stop_ids)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, **kw)
    n = enc["input_ids"].shape[1]
    return enc["input_ids"][0].tolist(), out[0, n:].tolist()
