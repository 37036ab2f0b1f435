"""Run folders for tests and benchmarks of export and the playground, in a second.

``make_adapter_run`` builds a run folder as engine.training would leave it (run.yaml, events.jsonl,
adapter/, checkpoints/checkpoint-N/) without training: the method is applied with the real
method builders, then its trainable parameters are pushed away from their initial values
(LoRA's B starts at zero, IA³'s vectors at one: an untrained adapter is invisible), so every
comparison of base vs tuned, adapter vs merged, has something to see.
"""

from __future__ import annotations

import json
from pathlib import Path


def chat_rows(n: int = 24) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i % 7, (i * 3) % 5
        rows.append({"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                                  {"role": "assistant", "content": f"Ahoy! {a} plus {b} be {a + b}, arr."}]})
    return rows


def write_chat_data(path: Path, n: int = 24) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(n)), encoding="utf-8")
    return path


def run_config(base_dir, run_dir, method: str = "lora", **method_fields):
    from engine.config import RunConfig

    cfg = RunConfig.from_dict({"method": {"name": method}})
    cfg.model.name_or_path = str(base_dir)
    cfg.data.path = str(Path(run_dir).parent / "data.jsonl")
    cfg.data.max_length = 64
    cfg.train.max_steps = 4
    cfg.train.lr = 5e-3
    cfg.output_dir = str(run_dir)
    m = cfg.method
    if hasattr(m, "target_modules"):
        m.target_modules = "auto"
    if hasattr(m, "dropout"):
        m.dropout = 0.0
    if getattr(m, "init", None) == "text":  # a soft prompt from text: random is enough here
        m.init = "random"
    if hasattr(m, "num_virtual_tokens"):
        m.num_virtual_tokens = 4
    for k, v in method_fields.items():
        setattr(m, k, v)
    return cfg


def _perturb(model, seed: int, scale: float) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)


def make_adapter_run(run_dir, base_dir, method: str = "lora", seed: int = 0, checkpoints: tuple[int, ...] = (),
                     scale: float = 0.2, final: bool = True, **method_fields) -> Path:
    """A run folder with a non-trivial adapter for ``method`` on the model at ``base_dir``."""
    import torch

    from engine.events import JsonlSink, make_event
    from engine.methods import apply_method, effective_quantization, get_method
    from engine.methods.storage import save_adapter_atomic, saveable
    from engine.models import load_model, load_tokenizer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_chat_data(run_dir.parent / "data.jsonl")
    cfg = run_config(base_dir, run_dir, method, **method_fields)
    cfg.validate()
    cfg.save(run_dir / "run.yaml")
    torch.manual_seed(seed)
    tok = load_tokenizer(cfg.model.name_or_path)
    quant = effective_quantization(cfg)
    model = load_model(cfg.model, quantization=quant or None, device="cpu")
    model = apply_method(model, cfg, tokenizer_path=str(base_dir))
    saving = saveable(model, get_method(method))  # as engine.training saves: BitFit its biases, full the model
    sink = JsonlSink(run_dir / "events.jsonl")
    sink.emit(make_event("started", total_steps=cfg.train.max_steps, method=method, train_examples=22,
                         eval_examples=2))
    step = 0
    for i, n in enumerate(sorted(checkpoints)):
        _perturb(model, seed * 1000 + i, scale)
        save_adapter_atomic(saving, None, run_dir / "checkpoints" / f"checkpoint-{n}")
        step = n
        sink.emit(make_event("step", step=n, loss=2.0 / (i + 1), lr=cfg.train.lr))
    metrics = {"final_loss": 1.25, "train_loss": 1.5, "eval_loss": 1.4, "global_step": max(step, 4)}
    if final:
        _perturb(model, seed * 1000 + 999, scale)
        save_adapter_atomic(saving, tok, run_dir / "adapter")
        sink.emit(make_event("finished", adapter_dir=str(run_dir / "adapter"), run_dir=str(run_dir),
                             metrics=metrics, step=metrics["global_step"]))
    sink.close()
    return run_dir
