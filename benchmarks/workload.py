"""A reproducible instruction data set with a long-tailed length distribution (no download).

Real instruction sets (Alpaca, Dolly, OpenHermes, UltraChat) are long-tailed: most examples are a
few dozen to a few hundred tokens, a few run to a thousand or more. That tail is what makes
padding expensive (every batch is as wide as its longest example), so the benchmark needs it.
Total lengths follow a log-normal (median ~170 tokens), clipped to 16–1024 tokens including the
chat template; the prompt takes 10–60% of each example, the rest is the trained answer. Text is
drawn from a fixed list of common words, so token counts are realistic for any English BPE.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no what can "
    "more out up into do about other time some could them than these two may first then only new "
    "like its over such our most after also made many well way where before through back years "
    "much should work because people water used between good long state world day river system "
    "number part small house place right under never found still same point great large city "
    "example answer question explain simple model learn train data value method result test "
    "memory language history science music market energy health garden travel recipe ocean "
    "mountain engine design problem reason step list table letter story summary program function"
).split()
_PUNCT = [".", ".", ".", ",", ",", "?", ":", ";"]
_OPENERS = ["Explain", "Describe", "Write", "Summarize", "List", "Compare", "Translate", "Give"]


def _text(rng: random.Random, n_words: int, opener: str | None = None) -> str:
    words = [opener] if opener else []
    while len(words) < n_words:
        w = rng.choice(_WORDS)
        words.append(w.capitalize() if not words or words[-1][-1] in ".?:" else w)
        if rng.random() < 0.09:
            words[-1] += rng.choice(_PUNCT)
    return " ".join(words).rstrip(",;:") + "."


def target_lengths(n: int, seed: int = 0, median: float = 170.0, sigma: float = 0.85,
                   lo: int = 16, hi: int = 1024) -> list[int]:
    """Total token lengths per example: log-normal, clipped to [lo, hi]."""
    rng = random.Random(seed)
    return [int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma)))) for _ in range(n)]


def make_records(n: int, seed: int = 0, tokens_per_word: float = 1.15, template_tokens: int = 30,
                 **length_kw) -> list[dict]:
    """``n`` chat records ``{"messages": [user, assistant]}`` with long-tailed lengths.

    ``template_tokens`` is the chat template's overhead (system prompt, role markers), taken off
    the target before words are drawn so the rendered total lands near the target.
    """
    rng = random.Random(seed + 1)
    out = []
    for total in target_lengths(n, seed, **length_kw):
        body = max(4, total - template_tokens)
        prompt_share = rng.uniform(0.1, 0.6)
        p_words = max(2, round(body * prompt_share / tokens_per_word))
        a_words = max(2, round(body * (1 - prompt_share) / tokens_per_word))
        out.append({"messages": [
            {"role": "user", "content": _text(rng, p_words, rng.choice(_OPENERS))},
            {"role": "assistant", "content": _text(rng, a_words)},
        ]})
    return out


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def percentiles(values: list[int], qs=(0, 50, 90, 99, 100)) -> dict[int, int]:
    s = sorted(values)
    return {q: s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] for q in qs}
