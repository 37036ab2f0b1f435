"""README.md model cards for exported adapters, merged models, GGUF files and weighted merges.

A card says what someone receiving the folder needs: the base model, the method and its
settings, the data, the training hyperparameters, the final losses and how to load it. It has
the Hugging Face front matter (``base_model``, ``library_name``, ``tags``) so a hub upload shows
it properly, but nothing here needs the hub.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

DEMO_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def base_model_label(name_or_path: str) -> str:
    if name_or_path == "demo":
        return f"{DEMO_HUB_ID} (the bundled demo copy, dequantized from its Q4_1 GGUF)"
    return name_or_path


def _front_matter(base: str, kind: str, extra_tags: list[str]) -> str:
    meta = {"library_name": "peft" if kind in ("adapter", "weighted") else "transformers",
            "tags": ["peft-studio", *extra_tags]}
    hub_base = DEMO_HUB_ID if base == "demo" else base
    # Only a hub-looking id is useful as base_model metadata; a local path means nothing elsewhere.
    if hub_base.count("/") == 1 and not hub_base.startswith((".", "/", "~")):
        meta["base_model"] = hub_base
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "—"
    if v is None:
        return "—"
    return str(v)


def _table(rows: list[tuple[str, object]]) -> str:
    out = ["| setting | value |", "|---|---|"]
    out += [f"| `{k}` | {_fmt(v)} |" for k, v in rows]
    return "\n".join(out)


def _dc_rows(obj, skip=()) -> list[tuple[str, object]]:
    return [(f.name, getattr(obj, f.name)) for f in fields(obj) if f.name not in skip]


def _losses(metrics: dict) -> str:
    def num(key):
        v = metrics.get(key)
        return f"{v:.4f}" if isinstance(v, (int, float)) else "not recorded"

    lines = [f"- final training loss (last logged step): {num('final_loss')}",
             f"- mean training loss over the run: {num('train_loss')}",
             f"- evaluation loss: {num('eval_loss')}"]
    if metrics.get("steps") is not None:
        lines.append(f"- optimizer steps: {metrics['steps']}")
    if metrics.get("best_value") is not None:
        lines.append(f"- best {metrics.get('best_metric')}: {metrics['best_value']:.4f} at step {metrics.get('best_step')}")
    if metrics.get("forgetting"):
        from engine.evals import describe_forgetting

        lines.append(f"- forgetting check: {describe_forgetting(metrics['forgetting'])} (PEFT Studio's bundled "
                     "general reference: plain-English passages and general prompts, base vs tuned, greedy)")
    if metrics.get("train_examples") is not None:
        lines.append(f"- training examples: {metrics['train_examples']}"
                     + (f", held-out examples: {metrics['eval_examples']}" if metrics.get("eval_examples") else ""))
    return "\n".join(lines)


def _how_to_load(kind: str, folder_name: str, base: str, gguf_file: str | None = None,
                 saved_as: str | None = None) -> str:
    """The code that loads the export; ``saved_as`` is the method's saved format
    (``MethodSpec.saved_as``: peft, tensors, modules or model)."""
    base_ref = DEMO_HUB_ID if base == "demo" else base
    if kind == "adapter" and saved_as == "model":
        kind = "merged"  # a full fine-tune's export is a complete model
    elif kind == "adapter" and saved_as == "tensors":
        return f"""```python
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{base_ref}")
# adapter_model.safetensors holds only the tensors that trained, named as in the base model.
missing, unexpected = model.load_state_dict(load_file("{folder_name}/adapter_model.safetensors"), strict=False)
assert not unexpected
tokenizer = AutoTokenizer.from_pretrained("{folder_name}")
```"""
    elif kind == "adapter" and saved_as == "modules":
        return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from engine.methods.storage import load_trained   # pip install peft-studio

model = load_trained(AutoModelForCausalLM.from_pretrained("{base_ref}"), "{folder_name}")
tokenizer = AutoTokenizer.from_pretrained("{folder_name}")
```
The adapter adds new modules (PEFT Studio's own method; peft has no such tuner), so the loader
that attaches them is needed."""
    if kind in ("adapter", "weighted"):
        return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel

base = AutoModelForCausalLM.from_pretrained("{base_ref}")
model = PeftModel.from_pretrained(base, "{folder_name}")
tokenizer = AutoTokenizer.from_pretrained("{folder_name}")
```"""
    if kind == "merged":
        return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{folder_name}")
tokenizer = AutoTokenizer.from_pretrained("{folder_name}")
```
No peft is needed: the adapter is merged into the weights."""
    return f"""```sh
llama-cli -m {folder_name}/{gguf_file} -cnv      # llama.cpp
ollama create {folder_name.lower()} -f {folder_name}/Modelfile && ollama run {folder_name.lower()}   # Ollama
```
```python
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("{folder_name}", gguf_file="{gguf_file}")
```"""


def render_run_card(info, kind: str = "adapter", folder_name: str = ".", adapter_label: str = "final",
                    details: dict | None = None) -> str:
    """The card for an export of a run. ``kind``: adapter | merged | gguf."""
    cfg = info.config
    spec = info.method
    details = details or {}
    base = cfg.model.name_or_path
    title = {"adapter": "Fine-tuned model (every weight)" if spec.saves_full_model else f"{spec.title} adapter", "merged": f"Merged model ({spec.title})",
             "gguf": f"GGUF model ({spec.title}, {details.get('gguf_type', '')})"}[kind]
    parts = [_front_matter(base, kind, [spec.name, kind]),
             f"# {info.name}: {title}\n",
             f"Fine-tuned with PEFT Studio from **{base_model_label(base)}**"
             + (f" (loaded {cfg.model.quantization or spec.needs_quantization}-quantized for training)"
                if (cfg.model.quantization or spec.needs_quantization) else "") + ".\n"]
    if getattr(cfg.method, "from_adapter", None):
        parts.append(continued_from(cfg))
    if kind != "adapter" and spec.saves_full_model:
        parts.append(f"Every weight was fine-tuned; this is checkpoint `{adapter_label}`"
                     + (f" in {details['dtype']}" if details.get("dtype") else "") + ".\n")
    elif kind != "adapter" and adapter_label == "base":
        parts.append("This is the base model itself, without the adapter (apply a GGUF LoRA adapter to it).\n")
    elif kind != "adapter":
        parts.append(f"Adapter `{adapter_label}` merged into the full-precision base weights"
                     + (f" in {details['dtype']}" if details.get("dtype") else "") + ".\n")
    if kind == "gguf" and details.get("agreement"):
        a = details["agreement"]
        parts.append(f"Checked in {a['runtime']} against the merged model (greedy answers to {a['prompts']} sample "
                     f"prompts): {a['sentence']} {a['logits_sentence']}\n")
    elif kind == "gguf" and details.get("max_abs_logit_diff") is not None:
        parts.append(f"Verified by loading the file back with transformers' GGUF loader: max |Δlogit| "
                     f"{details['max_abs_logit_diff']:.2e} against the merged model.\n")
    method_rows = [("method", spec.name)] if info.is_bare_adapter else _dc_rows(cfg.method)
    ac = details.get("adapter_config") or {}
    if ac.get("target_modules"):
        targets = ac["target_modules"]
        method_rows.append(("modules adapted", sorted(targets) if isinstance(targets, list) else targets))
    parts.append("## Method\n\n" + _table(method_rows) + "\n")
    if not info.is_bare_adapter:
        parts.append("## Data\n\n" + _table([(k, v) for k, v in _dc_rows(cfg.data)
                                              if k in ("path", "format", "validation_path", "validation_split",
                                                       "max_length", "train_on_prompt", "system_prompt",
                                                       "max_examples")]) + "\n")
        parts.append("## Training hyperparameters\n\n" + _table(_dc_rows(cfg.train, skip=("resume_from",))) + "\n")
        parts.append("## Results\n\n" + _losses(info.metrics) + "\n")
    parts.append("## How to load it\n\n" + _how_to_load(kind, folder_name, base, details.get("gguf_file"), spec.saved_as) + "\n")
    if kind == "adapter" and spec.needs_quantization:
        parts.append("The adapter was trained on a 4-bit NF4 base. Loading the base in full precision (as "
                     "above) gives the best quality; to reproduce the training conditions exactly, load it "
                     "with `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\")`.\n")
    return "\n".join(parts)


def continued_from(cfg) -> str:
    """The card's sentence for a run that continued a saved adapter (``method.from_adapter``)."""
    from engine.tasks import get_task

    task = get_task(cfg.train.task)
    ref = (f" {task.title}'s reference model was that starting adapter (a frozen copy), not the bare base."
           if task.reference else "")
    return (f"Training continued the adapter `{cfg.method.from_adapter}` (`method.from_adapter`) instead of "
            f"starting a fresh one: these weights are that adapter after this run's {task.title} training, "
            f"with its settings.{ref}\n")


def render_weighted_card(sources: list[Path], weights: list[float], method: str, density: float | None,
                         base: str, folder_name: str = ".") -> str:
    rows = "\n".join(f"| `{s}` | {w:g} |" for s, w in zip(sources, weights))
    return "\n".join([
        _front_matter(base, "weighted", ["lora", "weighted-merge", method]),
        "# Weighted merge of LoRA adapters\n",
        f"Made with PEFT Studio using peft's `add_weighted_adapter` (combination `{method}`"
        + (f", density {density:g}" if density is not None else "") + f") on base **{base_model_label(base)}**.\n",
        "| adapter | weight |\n|---|---|\n" + rows + "\n",
        "## How to load it\n\n" + _how_to_load("weighted", folder_name, base) + "\n",
    ])
