"""`peft-studio demo`: fine-tune the bundled model on the bundled persona dataset, headless,
then show base vs tuned answers on held-out prompts with a before/after score."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.config import RunConfig
from engine.console import human_sink
from engine.data.demo import (
    DEMO_TRAIN,
    PREFERENCE_TRAIN,
    load_heldout,
    load_preference_heldout,
    persona_score,
    score_answers,
)
from engine.inference import GenerationSettings, generate_batch
from engine.models import demo_model_dir, load_model, load_tokenizer
from engine.tasks import get_task
from engine.training import train
from engine.training.from_adapter import adopt as adopt_adapter


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
    # Evaluate every 5 steps: the eval events' sample answers show the persona appearing step by
    # step, scored by the demo's own metric (module:function, as any user metric).
    cfg.train.eval_steps = 5
    cfg.eval.metric = "engine.data.demo:persona_score"
    cfg.output_dir = out
    return cfg


def answers(model, tokenizer, prompts) -> list[str]:
    """Greedy answers (at most 48 new tokens) to chat prompts, as the demo and compare score them."""
    return generate_batch(model, tokenizer, prompts, GenerationSettings(max_new_tokens=48))


def run_demo(steps: int = 30, out: str = "runs/demo", prompts: int = 20, stream=None, task: str = "sft",
             from_adapter: str | None = None) -> int:
    """The headless demo: SFT on the persona data, or (``task`` dpo, orpo, kto, simpo) preference
    tuning on the persona-vs-plain pairs (run_preference_demo, ``from_adapter``: the adapter it
    continues). 0 when the tuned model scores better than the base."""
    if task != "sft":
        return run_preference_demo(task, steps, out, prompts, stream, from_adapter=from_adapter)
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
    if result.forgetting:
        from engine.evals import describe_forgetting

        print(f"\nForgetting check (bundled general text and prompts, base vs tuned): "
              f"{describe_forgetting(result.forgetting)}", file=stream)
    print(f"\nAdapter: {Path(result.adapter_dir).resolve()}", file=stream)
    print(f"Final train loss {result.metrics.get('final_loss', float('nan')):.4f}; "
          f"eval loss {result.metrics.get('eval_loss') or float('nan'):.4f}; total {time.time() - t0:.0f} s",
          file=stream)
    return 0 if after_score > before_score else 1


def _short(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---- the preference demo ----------------------------------------------------------------------

PREFERENCE_STEPS = 16  # the measured recipe's length (docs/preference.md, benchmarks/preference_demo.py)


def preference_config(task: str = "dpo", steps: int = PREFERENCE_STEPS, out: str = "runs/demo-dpo") -> RunConfig:
    """The preference demo's recipe: the SFT demo's LoRA (r=16, all linear layers) on the
    persona-vs-plain pairs (resources/preference), batch 8 pairs, lr 5e-4, β 0.1 (SimPO: β 2,
    γ 0.5, as the SimPO paper's range), from the base model. DPO adds the supervised loss on the
    chosen answers (rpo_alpha 1, RPO's value): measured with benchmarks/preference_demo.py, pure DPO
    at this lr made 35% of greedy answers repeat themselves by step 5 (each pair's answers share
    their fact, and DPO lowered both), and at lr 1e-4 it had not moved the preference by step 16;
    with rpo_alpha 1 the answers keep their fact and take the persona. SimPO likewise gets its own
    supervised term (cpo_alpha 1)."""
    cfg = demo_config(steps, out)
    cfg.data.path = str(PREFERENCE_TRAIN)
    cfg.data.max_length = 128
    cfg.data.validation_split = 0.0
    cfg.train.task = task
    cfg.train.lr = 5e-4
    cfg.train.logging_steps = 5
    if task == "simpo":
        cfg.train.preference.beta = 2.0
    # DPO + RPO, CPO-SimPO: the supervised term on the chosen answers (measured: without it, both
    # repeated themselves)
    if field := get_task(task).sft_weight_field:
        setattr(cfg.train.preference, field, 1.0)
    return cfg


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """The share (0–1) of ``pairs`` (prompt/chosen/rejected text) whose chosen answer the model
    gives the higher mean log-probability per answer token, each answer rendered after the prompt
    with the model's chat template. Mean per token, as SimPO's reward (arXiv 2405.14734), so that
    a shorter answer is not preferred for its length alone. One forward pass per answer, no
    generation."""
    import torch

    def mean_logp(prompt: str, answer: str) -> float:
        head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        whole = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                               {"role": "assistant", "content": answer}], tokenize=False)
        n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tokenizer(whole, add_special_tokens=False)["input_ids"]], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
        return float(logp[n_head - 1:].mean())

    model.eval()
    wins = sum(mean_logp(p["prompt"], p["chosen"]) > mean_logp(p["prompt"], p["rejected"]) for p in pairs)
    return wins / len(pairs) if pairs else 0.0


def run_preference_demo(task: str = "dpo", steps: int = PREFERENCE_STEPS, out: str = "runs/demo-dpo",
                        prompts: int = 20,
                        stream=None, from_adapter: str | None = None) -> int:
    """Preference-tune the demo model on the persona-vs-plain pairs and report, on held-out pairs
    about facts never trained, the preference accuracy (preference_accuracy) and the persona
    score of greedy answers, before and after. ``from_adapter``: continue that adapter (e.g. the
    SFT demo's run folder, runs/demo; method.from_adapter) — "before" is then the base with it.
    0 when the accuracy rose."""
    from peft import PeftModel

    stream = stream or sys.stdout
    t0 = time.time()
    start = f", continuing the adapter {from_adapter}" if from_adapter else ""
    print(f"PEFT Studio preference demo: teach SmolLM2-135M-Instruct to prefer pirate answers with "
          f"{task.upper()} (LoRA{start}), on this machine.", file=stream)
    cfg = preference_config(task, steps, out)
    if from_adapter:
        cfg.method.from_adapter = from_adapter
        cfg, _, notes = adopt_adapter(cfg)  # the folder, method and base are checked before anything loads
        for note in notes:
            print(note, file=stream)
    demo_model_dir(progress=lambda m: print(m, file=stream))
    tokenizer = load_tokenizer("demo")
    pairs = load_preference_heldout()
    convs = [[{"role": "user", "content": p["prompt"]}] for p in pairs[:prompts]]
    before_model = load_model(cfg.model)
    if cfg.method.from_adapter:
        before_model = PeftModel.from_pretrained(before_model, cfg.method.from_adapter)
    before_acc = preference_accuracy(before_model, tokenizer, pairs)
    before = answers(before_model, tokenizer, convs)
    del before_model
    field = get_task(task).sft_weight_field
    sft_weight = getattr(cfg.train.preference, field) if field else 0.0
    sft_term = ", plus the SFT loss on the chosen answers" if sft_weight else ""
    print(f"Training {steps} steps of {task.upper()} (LoRA r={cfg.method.r}, lr {cfg.train.lr:g}, batch "
          f"{cfg.train.batch_size} pairs{sft_term})...",
          file=stream)
    result = train(cfg, sinks=[human_sink(stream)])
    if result.status != "finished":
        print(f"The demo run did not finish: {result.error}", file=stream)
        return 1
    tuned = PeftModel.from_pretrained(load_model(cfg.model), str(result.adapter_dir))
    after_acc = preference_accuracy(tuned, tokenizer, pairs)
    after = answers(tuned, tokenizer, convs)
    label = "start" if cfg.method.from_adapter else "base"
    print(f"\nHeld-out prompts, {label} vs tuned (greedy):", file=stream)
    for c, b, a in list(zip(convs, before, after))[:5]:
        print(f"\n  Q: {c[-1]['content']}\n  {label:5s} [{persona_score(b):.1f}]: {_short(b)}\n  tuned "
              f"[{persona_score(a):.1f}]: {_short(a)}", file=stream)
    print(f"\nHeld-out preference accuracy on {len(pairs)} pairs (the chosen answer more likely per token):"
          f"\n  {label:5s} {before_acc:.2f}\n  tuned {after_acc:.2f}", file=stream)
    print(f"Persona score of greedy answers to {len(convs)} held-out prompts:\n  {label:5s} "
          f"{score_answers(before):.2f}\n  tuned {score_answers(after):.2f}", file=stream)
    print(f"\nAdapter: {Path(result.adapter_dir).resolve()}; total {time.time() - t0:.0f} s", file=stream)
    return 0 if after_acc > before_acc else 1
