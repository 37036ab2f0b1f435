"""The preference demo's recipe, measured: held-out preference accuracy, persona score, token F1
against the chosen answer, and the share of degenerate (repeating) greedy answers, at every
checkpoint of each recipe. Used to choose `engine.demo.preference_config`'s defaults.

    python benchmarks/preference_demo.py                       # the grid below
    python benchmarks/preference_demo.py --recipes dpo:5e-4:0.1 dpo:2e-4:0.5 --steps 20 --every 5

A recipe is ``task:lr:beta`` or ``dpo:lr:beta:rpo_alpha`` / ``simpo:lr:beta:cpo_alpha`` (the weight of
a supervised loss on the chosen answers added to the preference loss). Each trains the demo model (SmolLM2-135M-Instruct, LoRA r=16 on all
linear layers, batch 8 pairs) from the base on resources/preference, saving every ``--every``
steps, then scores each checkpoint on the 36 held-out pairs and 20 held-out prompts (facts never
trained). Prints a Markdown table. CPU minutes per recipe: roughly steps × 10 s on a quiet 2-core
machine, plus about 30 s of scoring per checkpoint.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_RECIPES = ["dpo:5e-4:0.1", "dpo:5e-4:0.1:1", "dpo:1e-4:0.1", "orpo:5e-4:0.1", "kto:5e-4:0.1",
                   "simpo:5e-4:2.0"]


def degenerate(answer: str) -> bool:
    """True when a word trigram occurs three times or more: the answer repeats itself (the
    over-optimised DPO answer "Ahoy! Ahoy! Ahoy! …")."""
    words = re.findall(r"\w+|[^\w\s]", answer.lower())
    grams = Counter(zip(words, words[1:], words[2:]))
    return bool(grams) and max(grams.values()) >= 3


def score(model, tokenizer, pairs, prompts: int) -> dict:
    """Scores of ``model`` on the held-out ``pairs`` (prompt/chosen/rejected text)."""
    from engine.data.demo import score_answers
    from engine.demo import answers, preference_accuracy
    from engine.evals.metrics import token_f1

    convs = [[{"role": "user", "content": p["prompt"]}] for p in pairs[:prompts]]
    said = answers(model, tokenizer, convs)
    f1 = [token_f1(a, p["chosen"]) for a, p in zip(said, pairs)]
    return {"accuracy": preference_accuracy(model, tokenizer, pairs), "persona": score_answers(said),
            "f1": sum(f1) / len(f1), "degenerate": sum(map(degenerate, said)) / len(said),
            "example": said[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES, help="task:lr:beta …")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=int, default=5, help="score every N steps")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--no-base", action="store_true", help="do not score the base model")
    ap.add_argument("--forgetting", action="store_true", help="also run each run's forgetting check")
    ap.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    args = ap.parse_args(argv)

    from peft import PeftModel

    from engine.console import human_sink
    from engine.data.demo import load_preference_heldout
    from engine.demo import preference_config
    from engine.models import demo_model_dir, load_model, load_tokenizer
    from engine.tasks import get_task
    from engine.training import train

    demo_model_dir()
    tokenizer = load_tokenizer("demo")
    pairs = load_preference_heldout()
    out = Path(args.out or tempfile.mkdtemp(prefix="pref-demo-"))
    rows = []
    if not args.no_base:
        s = score(load_model(preference_config().model), tokenizer, pairs, args.prompts)
        rows.append(("base", 0, s))
        print(f"base: {s}", flush=True)
    for recipe in args.recipes:
        task, lr, beta, *rpo = recipe.split(":")
        cfg = preference_config(task, args.steps, str(out / recipe.replace(":", "_")))
        cfg.train.lr = float(lr)
        cfg.train.preference.beta = float(beta)
        if rpo:  # the supervised loss on the chosen answers: DPO's rpo_alpha, SimPO's cpo_alpha
            setattr(cfg.train.preference, get_task(task).sft_weight_field, float(rpo[0]))
        cfg.eval.forgetting = args.forgetting
        cfg.train.save_steps = args.every
        cfg.train.save_total_limit = max(1, args.steps // args.every + 1)
        result = train(cfg, sinks=[human_sink(open("/dev/null", "w"))])
        if result.status != "finished":
            print(f"{recipe}: {result.status} {result.error}", flush=True)
            continue
        ckpts = sorted(Path(result.run_dir, "checkpoints").glob("checkpoint-*"),
                       key=lambda p: int(p.name.split("-")[1]))
        for ck in ckpts:
            step = int(ck.name.split("-")[1])
            tuned = PeftModel.from_pretrained(load_model(cfg.model), str(ck))
            s = score(tuned, tokenizer, pairs, args.prompts)
            rows.append((recipe, step, s))
            print(f"{recipe} step {step}: {s}", flush=True)
    print("\n| recipe (task:lr:β) | step | held-out accuracy | persona | token F1 vs chosen | repeating |")
    print("|---|---|---|---|---|---|")
    for recipe, step, s in rows:
        print(f"| {recipe} | {step} | {s['accuracy']:.2f} | {s['persona']:.2f} | {s['f1']:.2f} | "
              f"{s['degenerate']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
