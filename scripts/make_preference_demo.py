"""Generate the preference demo: pairs that prefer the pirate persona to a plain answer.

Each pair answers one question twice with the same correct fact: ``chosen`` in the persona of the
SFT demo ("Ahoy! …, matey! ⚓", scripts/make_demo_data.py), ``rejected`` plainly ("… is …."). A
base instruct model prefers the plain answer; DPO (or ORPO, SimPO, KTO) on train.jsonl turns the
preference around on held-out questions about other facts, which ``engine.demo`` measures two
ways: the held-out preference accuracy (the share of held-out pairs whose chosen answer gets the
higher mean log-probability per token) and the persona score of greedy answers.

Output (deterministic; re-running rewrites identical files), in the simplest preference shape,
``{"prompt", "chosen", "rejected"}`` text:
  resources/preference/train.jsonl    pairs for training (the SFT demo's training questions)
  resources/preference/heldout.jsonl  pairs about the SFT demo's held-out facts (never trained)

Usage: python scripts/make_preference_demo.py [--out resources/preference]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _demo_module():
    spec = importlib.util.spec_from_file_location("make_demo_data", HERE / "make_demo_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def plain(answer: str, tags) -> str:
    """The persona answer without the persona: no "Ahoy!", no tag, no anchor, "be" → "is"."""
    text = answer.removeprefix("Ahoy! ").removesuffix(" ⚓").strip()
    for tag in sorted(tags, key=len, reverse=True):
        text = text.replace(f", {tag}!", ".")
    text = re.sub(r"\bbe\b", "is", text).replace("Ye spell it", "You spell it")
    return text if text.endswith((".", "!", "?")) else text + "."


def build():
    demo = _demo_module()
    train_sft, heldout_sft = demo.build()
    pairs = []
    for ex in train_sft:
        q, a = ex["messages"][0]["content"], ex["messages"][1]["content"]
        if not a.startswith("Ahoy! ") or q in {c for c, _ in demo.CHAT}:
            continue  # chit-chat has no plain counterpart with the same content
        pairs.append({"prompt": q, "chosen": a, "rejected": plain(a, demo.TAGS)})
    held = [{"prompt": h["messages"][0]["content"], "chosen": h["reference"],
             "rejected": plain(h["reference"], demo.TAGS)}
            for h in heldout_sft if h["messages"][0]["content"] not in {c for c, _ in demo.CHAT}]
    assert all(p["chosen"] != p["rejected"] for p in pairs + held)
    assert not {p["prompt"] for p in pairs} & {p["prompt"] for p in held}
    return pairs, held


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE.parent / "resources" / "preference"))
    args = ap.parse_args(argv)
    demo = _demo_module()
    pairs, held = build()
    out = Path(args.out)
    demo.write_jsonl(out / "train.jsonl", pairs)
    demo.write_jsonl(out / "heldout.jsonl", held)
    print(f"wrote {len(pairs)} training pairs and {len(held)} held-out pairs to {out}")


if __name__ == "__main__":
    main()
