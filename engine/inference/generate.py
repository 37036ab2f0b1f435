"""generate_batch and stream: answers from any model a run can produce, with the KV cache.

Both render the conversation with the chat template the data was rendered with, hand the
prompt to transformers' ``generate`` (through ``engine.inference.prefix`` for methods with
virtual tokens) and stop at the same tokens as the no-cache reference
(``engine.inference.reference``), which the method-matrix test holds them to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from engine.inference import prefix
from engine.inference.prompt import build_prompt, decode, stop_token_ids
from engine.inference.settings import GenerationSettings
from engine.methods.storage import spec_of_model


def _gen_kwargs(model, tokenizer, s: GenerationSettings) -> dict:
    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    kw = dict(max_new_tokens=s.max_new_tokens, pad_token_id=pad, eos_token_id=stops or None)
    if s.greedy:
        # Explicit Nones: a model's generation_config may ask for sampling by default.
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=None)
    return kw


def uses_cache(model) -> bool:
    """Whether ``model`` generates with the KV cache: yes, unless its method declares that the
    cache changes its answers (``MethodSpec.cached_generation``: Lily, ShadowPEFT); those decode
    with a full forward per token, one prompt at a time."""
    spec = spec_of_model(model)
    return spec is None or spec.cached_generation


def _left_padded(tokenizer, prompts: list[str], device):
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = side


def _device(model):
    dev = getattr(model, "device", None)
    if dev is None:
        dev = next(model.parameters()).device
    return dev


def generate_batch(model, tokenizer, conversations: list[list[dict]], settings: GenerationSettings | None = None,
                   batch_size: int = 16) -> list[str]:
    """One answer per conversation (each a list of role/content messages), in order.

    Prompts are generated ``batch_size`` at a time in left-padded batches (much faster on the CPU);
    with greedy settings every answer equals the one the prompt gets alone, and equals
    ``reference_greedy``. ``model``: any causal LM a run can produce (a peft model, a model with
    restored tensors, a full fine-tune). Returns the decoded answers without special tokens."""
    import torch

    settings = settings or GenerationSettings()
    prompts = [build_prompt(tokenizer, c) for c in conversations]
    stops = stop_token_ids(model, tokenizer)
    kwargs = _gen_kwargs(model, tokenizer, settings)
    cached = uses_cache(model)
    if not cached:
        batch_size = 1  # an answer of such a method depends on what else is in the forward call
    out: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prompts), batch_size):
            enc = _left_padded(tokenizer, prompts[i:i + batch_size], _device(model))
            call = prefix.prepare(model, enc["input_ids"], enc["attention_mask"])
            torch.manual_seed(settings.seed)
            with torch.no_grad():
                gen = call.generator.generate(**call.kwargs, **kwargs, use_cache=cached)
            for row in gen[:, call.answer_start:]:
                out.append(decode(tokenizer, row.tolist(), stops))
    finally:
        model.train(was_training)
    return out


def stream(model, tokenizer, messages: list[dict], settings: GenerationSettings | None = None,
           cancel: threading.Event | None = None) -> Iterator[str]:
    """Yield an answer's text piece by piece as it is generated (the playground and chat show
    tokens as they come). Setting ``cancel``, or closing the iterator, stops generation at the
    next token; the generating thread has ended when the iterator is done. Errors in generation
    are raised here, in the consumer's thread."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    enc = _left_padded(tokenizer, [build_prompt(tokenizer, messages)], _device(model))
    call = prefix.prepare(model, enc["input_ids"], enc["attention_mask"])
    # skip_prompt drops the first put(), which is the prompt's ids (an empty row for embeddings).
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    # Set when the consumer stops iterating early (closes the generator): the generation thread
    # must stop too, before the caller changes the model (e.g. switches adapters) under it.
    abandoned = threading.Event()

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return abandoned.is_set() or bool(cancel is not None and cancel.is_set())

    errors: list[BaseException] = []
    model.eval()

    def run():
        try:
            torch.manual_seed(settings.seed)
            with torch.no_grad():
                call.generator.generate(**call.kwargs, streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([_Cancel()]),
                                        use_cache=uses_cache(model), **_gen_kwargs(model, tokenizer, settings))
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
    """Greedy decoding of one conversation through the same prompt and path as ``stream``, as token
    ids: (prompt token ids, generated token ids). Generation ends after ``max_new_tokens`` or on
    one of ``stop_ids`` (default: ``stop_token_ids``, what the views stop at), which is then the
    last id. Used to compare other runtimes (llama.cpp, a GGUF file) token by token with the model."""
    import torch

    enc = _left_padded(tokenizer, [build_prompt(tokenizer, messages)], _device(model))
    call = prefix.prepare(model, enc["input_ids"], enc["attention_mask"])
    kw = _gen_kwargs(model, tokenizer, GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0))
    if stop_ids:
        kw["eos_token_id"] = list(stop_ids)
    model.eval()
    with torch.no_grad():
        out = call.generator.generate(**call.kwargs, **kw, use_cache=uses_cache(model))
    return enc["input_ids"][0].tolist(), out[0, call.answer_start:].tolist()
