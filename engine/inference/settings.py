"""How to generate: the settings every view shares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationSettings:
    """Settings of one generation call.

    ``max_new_tokens``: the most tokens generated per answer (tokens). ``temperature``: 0 decodes
    greedily (deterministic, what the no-cache reference checks); above 0 samples from the softmax
    of logits / temperature. ``top_p``: nucleus sampling's probability mass (0–1, sampling only).
    ``seed``: seeds sampling per call, so two models given the same prompt and seed draw comparable
    samples (base vs tuned side by side)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return not (self.temperature and self.temperature > 0)
