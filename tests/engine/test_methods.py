"""THE method matrix: every registered method, on a tiny offline model, through engine.training.train.

For each method: it builds, trains ≥ 10 steps with falling loss, saves, reloads onto a fresh base
to the logits the trained model had in memory, and, where it can merge, merges to a plain model
with the same logits (fp32, 1e-4). A new method is covered the moment it registers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import ListSink
from engine.methods import PARAMS, get_method, registered

STEPS = 12

# Per-method settings the tiny model needs: a learning rate at which 12 steps clearly lower the
# loss, the fixture model (BitFit needs biases), and method fields sized for hidden=64 layers.
CASES: dict[str, dict] = {
    "lora": {"lr": 5e-3}, "dora": {"lr": 5e-3}, "qlora": {"lr": 5e-3},
    "full": {"lr": 1e-3}, "selective": {"lr": 2e-3},
    "bitfit": {"model": "tiny_model_bias", "lr": 2e-2},
    "vera": {"lr": 5e-2}, "pvera": {"lr": 5e-2}, "unilora": {"lr": 5e-2}, "tinylora": {"lr": 5e-2},
    "road": {"lr": 5e-2, "params": {"group_size": 16}},
    "ln_tuning": {"lr": 5e-2}, "psoft": {"lr": 5e-2}, "frod": {"lr": 5e-2}, "hira": {"lr": 3e-2},
    "supertuning": {"lr": 5e-2}, "cartridge": {"lr": 5e-2}, "adaption_prompt": {"lr": 5e-2},
    "c3a": {"lr": 3e-2, "params": {"block_size": 16}},
    "oft": {"params": {"oft_block_size": 16}},
    "boft": {"params": {"boft_block_size": 4}},
    "vblora": {"params": {"vector_length": 32, "num_vectors": 64}},
    "fourierft": {"lr": 3e-2, "params": {"n_frequency": 200}},
    "waveft": {"params": {"n_frequency": 200}},
    "shira": {"params": {"r": 8}},
    "adamss": {"params": {"r": 16, "num_subspaces": 2}},
    "trainable_tokens": {"lr": 5e-2, "params": {"token_indices": list(range(0, 320))}},
}
NEEDS = {"qlora": "bitsandbytes", "adamss": "sklearn"}


def _marks(name: str):
    pkg = NEEDS.get(name)
    if pkg and importlib.util.find_spec(pkg) is None:
        return [pytest.mark.skip(reason=f"{name} needs {pkg}")]
    return []


METHODS = [pytest.param(n, id=n, marks=_marks(n)) for n in registered()]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    rows = []
    for i in range(48):
        a, b = i % 7, (i * 3) % 5
        rows.append({"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                                  {"role": "assistant", "content": f"Ahoy! {a} plus {b} be {a + b}, arr."}]})
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def matrix_config(name: str, model_dir, data: Path, out: Path) -> RunConfig:
    case = CASES.get(name, {})
    method = {"name": name, **case.get("params", {})}
    return RunConfig.from_dict({
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "max_length": 64, "validation_split": 0.1},
        "method": method,
        "train": {"max_steps": STEPS, "batch_size": 4, "lr": case.get("lr", 1e-2), "seed": 0},
        "output_dir": str(out),
    })


def test_every_method_has_a_parameter_class_and_a_title():
    assert set(PARAMS) == set(registered())
    for name in registered():
        doc = (PARAMS[name].__doc__ or "").strip()
        assert ":" in doc, f"{name}: the studio shows 'Title: description' from the params docstring"
        assert get_method(name).description


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_saves_reloads_and_merges(name, request, data_file, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import engine.training.run
    from engine.methods.storage import load_trained, merge_trained
    from engine.training import train

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    spec = get_method(name)
    model_dir = request.getfixturevalue(CASES.get(name, {}).get("model", "tiny_model_dir"))
    cfg = matrix_config(name, model_dir, data_file, tmp_path / "run")
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("What is 3 plus 4?", return_tensors="pt").input_ids

    # The trained model's own logits, taken just before it is saved.
    seen = {}
    original = engine.training.run.save_adapter_atomic

    def capture(model, tokenizer, target, *a, **kw):
        inner = getattr(model, "model", model) if type(model).__name__ == "_Saver" else model
        inner.eval()
        with torch.no_grad():
            seen["logits"] = inner(input_ids=ids).logits.float()
        return original(model, tokenizer, target, *a, **kw)

    monkeypatch.setattr(engine.training.run, "save_adapter_atomic", capture)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", f"{name}: {result.error}"

    losses = [e["loss"] for e in sink.of("step")]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, f"{name}: loss did not fall: {losses}"
    started = sink.of("started")[0]
    assert 0 < started["trainable_params"] <= started["total_params"]

    def fresh_base(quant=None):
        if quant:
            from engine.models import load_model

            return load_model(cfg.model, quantization=quant, device="cpu")
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    quant = spec.needs_quantization
    with torch.no_grad():
        base_logits = fresh_base()(input_ids=ids).logits
    reloaded = load_trained(fresh_base(quant), result.adapter_dir).eval()
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits.float()
    assert torch.allclose(logits, seen["logits"], atol=1e-5), f"{name}: reload changed the logits by " \
        f"{(logits - seen['logits']).abs().max():.2e}"
    if not spec.prompt_based:  # prompt methods' logits include the virtual positions
        assert not torch.allclose(logits, base_logits, atol=1e-6), f"{name}: the adapter changed nothing"

    if spec.can_merge:
        # QLoRA merges into a full-precision base, never into the 4-bit one (DESIGN §4).
        unmerged = load_trained(fresh_base(), result.adapter_dir).eval() if quant else reloaded
        with torch.no_grad():
            want = unmerged(input_ids=ids).logits
        merged = merge_trained(unmerged, name)
        assert "peft" not in type(merged).__module__
        with torch.no_grad():
            got = merged(input_ids=ids).logits
        assert torch.allclose(got, want, atol=1e-4), f"{name}: merge moved the logits by {(got - want).abs().max():.2e}"


@pytest.mark.parametrize("name", [n for n in registered() if get_method(n).preflight_build or n in
                                  ("lora", "qlora", "dora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning",
                                   "bitfit", "selective", "full", "bottleneck")])
def test_parameter_count_for_every_method(name, request, tiny_model_dir, tiny_model_bias):
    """What the estimator and the studio's size box use: counted on the meta device, no weights."""
    from engine.estimate import count_params

    model_dir = tiny_model_bias if CASES.get(name, {}).get("model") == "tiny_model_bias" else tiny_model_dir
    cfg = matrix_config(name, model_dir, Path("unused.jsonl"), Path("unused"))
    if name == "qlora":
        cfg.model.quantization = None  # counting needs no bitsandbytes
        pytest.importorskip("bitsandbytes")
    counts = count_params(cfg)
    assert 0 < counts["trainable_params"] <= counts["total_params"]
