"""The one generation path: every view of a model's output goes through it (DESIGN §2.9).

Chat, the playground, the demo, compare-methods and the export round trips all call these, so
what a person sees is what the trained model computes. The public names (stable; other parts of
the engine and other branches code against them):

* ``GenerationSettings`` — max_new_tokens, temperature (0: greedy), top_p, seed;
* ``generate_batch(model, tokenizer, conversations, settings) -> list[str]`` — many answers at
  once (left-padded batches); greedy answers equal single ones;
* ``stream(model, tokenizer, messages, settings, cancel) -> Iterator[str]`` — text as it comes;
* ``greedy_ids(model, tokenizer, messages, max_new_tokens, stop_ids) -> (prompt ids, new ids)`` —
  the same greedy path as token ids (the export checks compare GGUF / llama.cpp with it);
* ``reference_greedy(model, tokenizer, conversation, max_new_tokens) -> str`` — the truth the
  path is checked against: greedy decoding with a full forward pass at every step, no cache;
* ``build_prompt``, ``stop_token_ids`` — the prompt and the stop tokens both paths share.

Methods that put virtual tokens in front of the input (prompt tuning, P-tuning) or key/value
prefixes into the attention (prefix tuning) are decoded with the KV cache by handing their prefix
to transformers' ``generate`` directly (``engine.inference.prefix`` says why peft's own
``generate`` cannot be used for them here).
"""

from engine.inference.generate import generate_batch, greedy_ids, stream
from engine.inference.prompt import build_prompt, encode, stop_token_ids
from engine.inference.reference import reference_greedy
from engine.inference.settings import GenerationSettings

__all__ = ["GenerationSettings", "build_prompt", "encode", "generate_batch", "greedy_ids", "reference_greedy",
           "stop_token_ids", "stream"]
