"""Does the exported file answer like the model? Greedy continuations compared token by token.

The merged model (transformers, float32) answers a few prompts greedily through the project's
generation path (``engine.inference.greedy_ids``); the GGUF file answers the same prompt tokens
in its consumer — llama.cpp when ``llama-cpp-python`` is installed, else transformers' GGUF
reader. The report counts prompts answered identically and says where the others first differ;
on the prompt and the reference answer it also compares every position's scores (teacher
forcing): how often the first choice agrees, and the largest change of any score, put next to
the margin between first and second choice so that the number means something.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in one sentence what fine-tuning a language model means.",
    "Name three fruits that are yellow.",
    "How do I boil an egg?",
)
DEFAULT_NEW_TOKENS = 32


@dataclass
class PromptResult:
    prompt: str
    reference: list[int]           # the merged model's greedy tokens
    got: list[int]                 # the file's greedy tokens from the same prompt tokens
    same_tokenization: bool | None = None   # the runtime tokenized the prompt text identically

    @property
    def identical(self) -> bool:
        return self.got == self.reference

    @property
    def first_difference(self) -> int | None:
        """1-based index of the first differing token, None when identical."""
        for i, (a, b) in enumerate(zip(self.reference, self.got)):
            if a != b:
                return i + 1
        if len(self.reference) != len(self.got):
            return min(len(self.reference), len(self.got)) + 1
        return None


@dataclass
class Agreement:
    """How a GGUF file's answers compare with the merged model's."""

    runtime: str                   # "llama.cpp" | "transformers"
    label: str                     # the file's type, e.g. "Q4_K_M"
    new_tokens: int
    results: list[PromptResult] = field(default_factory=list)
    top1_agree: int = 0            # positions whose first choice agrees (teacher forcing)
    positions: int = 0
    max_abs_logit_diff: float = 0.0
    median_margin: float = 0.0     # median gap between the model's first and second choice

    @property
    def identical(self) -> int:
        return sum(r.identical for r in self.results)

    def sentence(self) -> str:
        """One plain sentence, e.g. 'llama.cpp (Q8_0) answers the same first 32 tokens as the
        merged model on 5 of 5 prompts.'"""
        n, total = self.identical, len(self.results)
        who = f"{self.runtime} ({self.label})"
        text = f"{who} answers the same first {self.new_tokens} tokens as the merged model on {n} of {total} prompts"
        diffs = [(i + 1, r.first_difference) for i, r in enumerate(self.results) if not r.identical]
        if diffs:
            where = ", ".join(f"prompt {p} from token {t} on" for p, t in diffs)
            text += f"; it changes the answer on {len(diffs)} ({where})"
        bad_tok = sum(1 for r in self.results if r.same_tokenization is False)
        if bad_tok:
            text += f". Its tokenizer splits {bad_tok} of {total} prompts differently from the model's"
        return text + "."

    def logits_sentence(self) -> str:
        """What the max |Δlogit| means here, in words."""
        return (f"Scored position by position on the prompts and answers, the first choice agrees at "
                f"{self.top1_agree} of {self.positions} positions; the largest change of any token's score is "
                f"{self.max_abs_logit_diff:.3g} (max |Δlogit|), where the model's first choice leads its second by "
                f"{self.median_margin:.3g} at the median position — a change well below that lead cannot change "
                "a greedy answer, one near it can at the closest calls.")

    def as_dict(self) -> dict:
        return {"runtime": self.runtime, "label": self.label, "new_tokens": self.new_tokens,
                "identical": self.identical, "prompts": len(self.results),
                "first_difference": [r.first_difference for r in self.results],
                "top1_agree": self.top1_agree, "positions": self.positions,
                "max_abs_logit_diff": self.max_abs_logit_diff, "median_margin": self.median_margin,
                "sentence": self.sentence(), "logits_sentence": self.logits_sentence()}


def _conversations(prompts, system: str | None) -> list[list[dict]]:
    pre = [{"role": "system", "content": system}] if system else []
    return [pre + [{"role": "user", "content": p}] for p in prompts]


def compare(model, tokenizer, runtime, label: str, prompts=DEFAULT_PROMPTS, new_tokens: int = DEFAULT_NEW_TOKENS,
            system: str | None = None, stop_ids: list[int] | None = None) -> Agreement:
    """Compare ``runtime`` (``LlamaCppModel`` or ``TransformersRuntime``) with ``model``.

    Both answer until ``stop_ids`` or, for llama.cpp, any token it ends generation on.
    """
    import numpy as np
    import torch

    from engine.inference import build_prompt

    convs = _conversations(prompts, system)
    if hasattr(runtime, "end_ids"):
        # Both sides stop where the runtime would: llama.cpp also ends on tokens such as
        # <|endoftext|> that the model's generation config may not list.
        stop_ids = sorted(set(stop_ids or []) | set(runtime.end_ids()))
    reference = reference_answers(model, tokenizer, prompts, new_tokens, system, stop_ids)
    agreement = Agreement(getattr(runtime, "name", "llama.cpp"), label, new_tokens)
    margins = []
    for prompt, conv, (prompt_ids, ref) in zip(prompts, convs, reference):
        same_tok = None
        if hasattr(runtime, "tokenize"):
            same_tok = runtime.tokenize(build_prompt(tokenizer, conv)) == prompt_ids
        got = runtime.greedy(prompt_ids, new_tokens, stop_ids, conv)
        agreement.results.append(PromptResult(prompt, ref, got, same_tok))
        ids = prompt_ids + ref
        with torch.no_grad():
            want = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
        have = runtime.logits(ids)
        agreement.positions += len(ids)
        agreement.top1_agree += int((want.argmax(-1) == have.argmax(-1)).sum())
        agreement.max_abs_logit_diff = max(agreement.max_abs_logit_diff, float(np.abs(want - have).max()))
        top2 = np.sort(want, axis=-1)[:, -2:]
        margins.extend((top2[:, 1] - top2[:, 0]).tolist())
    agreement.median_margin = float(np.median(margins)) if margins else 0.0
    return agreement


def reference_answers(model, tokenizer, prompts=DEFAULT_PROMPTS, new_tokens: int = DEFAULT_NEW_TOKENS,
                      system: str | None = None, stop_ids: list[int] | None = None):
    """The model's (prompt ids, greedy ids) for each prompt, through engine.inference."""
    from engine.inference import greedy_ids

    return [greedy_ids(model, tokenizer, conv, new_tokens, stop_ids) for conv in _conversations(prompts, system)]


class TransformersRuntime:
    """A GGUF file read back by transformers' GGUF loader, answering through engine.inference."""

    name = "transformers' GGUF reader"

    def __init__(self, path, tokenizer):
        from engine.export.to_gguf import load_with_transformers

        self.model = load_with_transformers(path)
        self.tokenizer = tokenizer

    def logits(self, ids: list[int]):
        import torch

        with torch.no_grad():
            return self.model(input_ids=torch.tensor([ids])).logits[0].float().numpy()

    def greedy(self, prompt_ids: list[int], new_tokens: int, stop_ids=None, conv=None) -> list[int]:
        from engine.inference import greedy_ids

        ids, out = greedy_ids(self.model, self.tokenizer, conv, new_tokens, stop_ids)
        if ids != prompt_ids:  # same tokenizer, same template: cannot differ
            raise RuntimeError("prompt tokenization changed between two calls")
        return out

    def close(self) -> None:
        self.model = None
