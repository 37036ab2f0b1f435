"""The truth the generation path is checked against: greedy decoding by a full forward pass.

No KV cache, no ``generate``, no padding: at every step the whole sequence so far goes through
the model's own ``forward`` — for a peft model that is peft's forward, the very code training
ran, which prepends the soft prompt or the key/value prefix itself. Slow (quadratic in the
answer's length); for tests and checks, never for the views.
"""

from __future__ import annotations

from engine.inference.prompt import decode, encode, stop_token_ids


def reference_greedy(model, tokenizer, conversation: list[dict], max_new_tokens: int = 32) -> str:
    """The greedy answer to ``conversation`` (role/content messages), computed with a full
    forward pass per new token (``use_cache=False``). Stops at the same tokens as
    ``generate_batch`` (``stop_token_ids``) or after ``max_new_tokens`` tokens."""
    import torch

    stops = stop_token_ids(model, tokenizer)
    device = next(model.parameters()).device
    ids = torch.tensor([encode(tokenizer, conversation)], device=device)
    new: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
                token = int(logits[0, -1].float().argmax())
                new.append(token)
                if token in stops:
                    break
                ids = torch.cat((ids, torch.tensor([[token]], device=device)), dim=1)
    finally:
        model.train(was_training)
    return decode(tokenizer, new, stops)
