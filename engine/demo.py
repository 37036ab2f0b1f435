"""`peft-studio demo`: fine-tune the bundled model on the bundled persona dataset, headless,
then show base vs tuned answers on held-out prompts with a before/after score."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.config import RunConfig
from engine.console import human_sink
from engine.data.demo import DEMO_TRAIN, load_heldout, persona_score, score_answers
from engine.inference import GenerationSettings, generate_batch
from engine.models import demo_model_dir, load_model, load_tokenizer
from engine.training import train


def demo_config(steps: int = 30, out: str = "runs/demo") -> RunConfig:
    """The measured recipe (DESIGN §4): LoRA r=16 on all linear layers, lr 1e-3, batch 8."""
    cfg = RunConfig()
    cfg.model.name_or_path = "demo"
    cfg.data.path = str(DEMO_TRAIN)
    cfg.data.max_length = 256
    cfg.data.validation_split = 0.05
    cfg.method.r = 16
    cfg.method.alpha = 32
    cfg.method.dropout = 0.0
    cfg.method.target_modules = "all-linear"
    cfg.train.lr = 1e-3
    cfg.train.batch_size = 8
    cfg.train.max_steps = steps
    cfg.train.warmup_ratio = 0.1
    cfg.train.scheduler = "cosine"
    cfg.output_dir = out
    return cfg


def answers(model, tokenizer, prompts) -> list[str]:
    """Greedy answers (at most 48 new tokens) to chat prompts, as the demo and compare score them."""
    return generate_batch(model, tokenizer, prompts, GenerationSettings(max_new_tokens=48))


def run_demo(steps: int = 30, out: str = "runs/demo", prompts: int = 20, stream=None) -> int:
    stream = stream or sys.stdout
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    print("PEFT Studio demo: teach SmolLM2-135M-Instruct a pirate persona with LoRA, on this machine.",
          file=stream)
    demo_model_dir(progress=lambda m: print(m, file=stream))
    cfg = demo_config(steps, out)
    tokenizer = load_tokenizer("demo")
    heldout = load_heldout()[:prompts]
    convs = [h["messages"] for h in heldout]

    base = load_model(cfg.model)
    print(f"Asking the base model {len(convs)} held-out questions...", file=stream)
    before = answers(base, tokenizer, convs)
    before_score = score_answers(before)

    print(f"Training {steps} steps (LoRA r=16, all linear layers, lr 1e-3, batch 8)...", file=stream)
    result = train(cfg, sinks=[human_sink(stream)])
    if result.status != "finished":
        print(f"The demo run did not finish: {result.error}", file=stream)
        return 1

    from peft import PeftModel

    tuned = PeftModel.from_pretrained(base, str(result.adapter_dir))
    after = answers(tuned, tokenizer, convs)
    after_score = score_answers(after)

    print("\nHeld-out prompts, base vs tuned (greedy):", file=stream)
    for h, b, a in list(zip(heldout, before, after))[:5]:
        q = h["messages"][-1]["content"]
        print(f"\n  Q: {q}\n  base  [{persona_score(b):.1f}]: {_short(b)}\n  tuned [{persona_score(a):.1f}]: "
              f"{_short(a)}", file=stream)
    print(f"\nPersona score on {len(convs)} held-out prompts (1.0 = every answer in the taught style):",
          file=stream)
    print(f"  base  {before_score:.2f}\n  tuned {after_score:.2f}", file=stream)
    print(f"\nAdapter: {Path(result.adapter_dir).resolve()}", file=stream)
    print(f"Final train loss {result.metrics.get('final_loss', float('nan')):.4f}; "
          f"eval loss {result.metrics.get('eval_loss') or float('nan'):.4f}; total {time.time() - t0:.0f} s",
          file=stream)
    return 0 if after_score > before_score else 1


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
