"""The memory estimate: components, verdicts, every method, bad input, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
GiB = 1 << 30


def _cfg(name="smollm2-135m", method="lora", train=None, data=None, model=None, **mkw):
    from engine.config import RunConfig

    return RunConfig.from_dict({
        "model": {"name_or_path": str(CONFIGS / name) if "/" not in name else name, **(model or {})},
        "method": {"name": method, **mkw}, "train": train or {}, "data": data or {}})


def _est(*a, gpu="24GB", **kw):
    from engine.estimate import estimate

    return estimate(_cfg(*a, **kw), gpu)


def test_probe_time_on_tiny_model(tiny_model_dir):
    from engine.config import RunConfig
    from engine.estimate import probe_time

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)},
                               "train": {"batch_size": 2, "max_steps": 10}, "data": {"max_length": 32}})
    t = probe_time(cfg, steps=1)
    assert t["step_s"] > 0 and t["total_steps"] == 10 and t["train_s"] == pytest.approx(10 * t["step_s"])
    assert t["weights"] == "real" and t["from_data"]   # the default data set: the bundled demo


def test_components_add_up():
    e = _est("llama-3-8b", train={"batch_size": 2}, data={"max_length": 1024})
    c = e.components
    allocated = sum(c[k] for k in ("frozen_weights", "trainable_params", "gradients", "optimizer_states",
                                   "activations", "logits_loss", "transient"))
    assert allocated == e.peak_allocated
    assert e.peak_reserved == e.peak_allocated + c["allocator_overhead"]
    assert e.device_total == e.peak_reserved + c["cuda_context"] + c["outside_allocator"]
    # bf16 weights of Llama-3-8B: 2 bytes a parameter; LoRA adapters and Adam state in fp32.
    assert c["frozen_weights"] == 2 * 8_030_261_248
    assert c["trainable_params"] == 4 * 41_943_040
    assert c["optimizer_states"] == 8 * 41_943_040
    d = e.to_dict()
    for key in ("components", "peak_allocated", "peak_reserved", "device_total", "total_params",
                "trainable_params", "adapter_bytes", "verdict"):
        assert key in d


def test_levers_move_the_estimate_the_right_way():
    base = _est("llama-3-8b", train={"batch_size": 2}, data={"max_length": 1024})
    bigger = _est("llama-3-8b", train={"batch_size": 4}, data={"max_length": 1024})
    gc = _est("llama-3-8b", train={"batch_size": 2, "gradient_checkpointing": True}, data={"max_length": 1024})
    paged = _est("llama-3-8b", train={"batch_size": 2, "optimizer": "paged_adamw_8bit"},
                 data={"max_length": 1024})
    assert bigger.peak_allocated > base.peak_allocated
    assert gc.components["activations"] < base.components["activations"] / 5
    assert paged.components["optimizer_states"] == 0 and paged.components["outside_allocator"] > 0
    assert paged.components["outside_allocator"] < base.components["optimizer_states"] / 3


def test_chunked_loss_never_holds_full_logits():
    std = _est("llama-3-8b", train={"batch_size": 4, "loss_impl": "standard"}, data={"max_length": 2048})
    chunked = _est("llama-3-8b", train={"batch_size": 4, "loss_impl": "chunked"}, data={"max_length": 2048})
    # 8192 packed tokens × 128,256 vocab × ~12 bytes against a rows × hidden gradient and one chunk.
    assert std.sizes["logits_loss"] > 12e9 > 1e9 > chunked.sizes["logits_loss"]
    assert any("chunked linear cross-entropy" in n for n in chunked.notes)
    gemma = _est("gemma-2-2b", train={"loss_impl": "chunked"})   # soft-capped logits: standard path
    assert not any("chunked" in n for n in gemma.notes)


def test_qlora_weights_nf4_with_double_quant():
    from engine.models.quant import quantized_weight_bytes

    # model.upcast_embeddings: true keeps what peft's k-bit preparation made of the frozen rest.
    q = _est("llama-3-8b", "qlora", train={"batch_size": 1}, data={"max_length": 512},
             model={"upcast_embeddings": True})
    lin = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    other = 8_030_261_248 - lin
    w = q.components["frozen_weights"]
    # ~4.13 bits a quantized weight; embeddings, head and norms in fp32 after k-bit preparation.
    assert abs(w - (lin * 4.127 / 8 + other * 4)) / w < 0.01
    # The default (upcast_embeddings: false): the untied embeddings and head go back to bf16.
    default = _est("llama-3-8b", "qlora", train={"batch_size": 1}, data={"max_length": 512})
    assert w - default.components["frozen_weights"] == 2 * 128256 * 4096 * 2
    assert quantized_weight_bytes(4096, 4096, "nf4", False) > quantized_weight_bytes(4096, 4096, "nf4", True)
    assert q.quantization == "nf4"


def test_verdicts_and_limits():
    small = _est("smollm2-135m", train={"batch_size": 4}, data={"max_length": 512}, gpu="24GB")
    assert small.verdict == "fits" and small.max_batch_size >= 4 and small.max_seq_len >= 512
    assert not small.suggestions
    big = _est("llama-3-8b", train={"batch_size": 8}, data={"max_length": 4096}, gpu="RTX 4090")
    assert big.verdict == "exceeds"
    assert big.gpu_name == "RTX 4090" and big.gpu_bytes < 24 * GiB
    assert big.suggestions and any("gradient checkpointing" in s for s in big.suggestions)
    assert big.max_batch_size is None or big.max_batch_size < 8
    here = _est("smollm2-135m", gpu=None)            # this machine: its GPU, or its CPU and RAM
    assert here.verdict in ("fits", "tight", "exceeds") and here.gpu_bytes > 0


def test_without_a_gpu_this_machine_means_its_cpu_and_ram():
    """On the CPU engine.training loads `auto` weights in float32 and never autocasts, and the
    figure is the process's RAM: no CUDA context, the runtime instead, judged against RAM."""
    import psutil
    import torch

    from engine.estimate.memory import RUNTIME_CPU, resolve_gpu

    cpu = _est("smollm2-135m", gpu="cpu", train={"batch_size": 2}, data={"max_length": 256})
    gpu = _est("smollm2-135m", gpu="24GB", train={"batch_size": 2}, data={"max_length": 256})
    assert cpu.on_cpu and not gpu.on_cpu and cpu.dtype == "float32" and gpu.dtype == "bfloat16"
    c = cpu.components
    assert c["cuda_context"] == 0 and c["runtime"] == RUNTIME_CPU > 0
    assert c["frozen_weights"] == 2 * gpu.components["frozen_weights"]        # fp32 vs bf16
    assert cpu.sizes["activations"] > gpu.sizes["activations"]               # no autocast on the CPU
    assert cpu.gpu_bytes == psutil.virtual_memory().total and "RAM" in cpu.gpu_name
    assert cpu.device_total == cpu.peak_reserved + c["runtime"] + c["outside_allocator"]
    if not torch.cuda.is_available():
        assert resolve_gpu(None).cpu
    # Advice that needs a GPU (bitsandbytes 4-bit bases, 8-bit optimizers) is not given for the CPU.
    tiny_ram = _est("llama-3-8b", gpu="cpu", train={"batch_size": 8}, data={"max_length": 4096})
    if tiny_ram.verdict != "fits":
        assert tiny_ram.suggestions and not any("qlora" in s or "8 bits" in s for s in tiny_ram.suggestions)


def test_prompt_methods_lengthen_sequences():
    plain = _est("smollm2-135m", "lora", train={"batch_size": 2, "packing": False, "loss_impl": "standard"},
                 data={"max_length": 256})
    pt = _est("smollm2-135m", "prompt_tuning", num_virtual_tokens=64, train={"batch_size": 2},
              data={"max_length": 256})
    assert any("320 positions" in n for n in pt.notes)
    assert pt.sizes["logits_loss"] == pytest.approx(plain.sizes["logits_loss"] * 320 / 256, rel=0.01)
    prefix = _est("smollm2-135m", "prefix_tuning", num_virtual_tokens=64, train={"batch_size": 2},
                  data={"max_length": 256})
    assert any("key/value" in n for n in prefix.notes)


@pytest.fixture
def quick_fits(monkeypatch):
    """Two tiny widths instead of ten: this test checks that every method runs end to end, not
    the fit's accuracy (tested above), and the whole registry must stay fast."""
    from engine.estimate import activations

    monkeypatch.setattr(activations, "_WIDTHS", activations._WIDTHS[:2])
    monkeypatch.setattr(activations, "_WIDE", activations._WIDE[:2])
    monkeypatch.setattr(activations, "_SHAPES", activations._SHAPES[:1])
    monkeypatch.setattr(activations, "_CACHE", {})


# Parameters some methods need before they can be built at all.
_NEEDS = {"adalora": ({"total_step": 100}, {}), "trainable_tokens": ({"token_indices": [0, 1]}, {})}
CORE = {"lora", "qlora", "dora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning", "full", "bitfit"}


def _registered():
    from engine.methods import registered

    return registered()


@pytest.fixture(scope="module")
def small_qwen(tmp_path_factory):
    """A Qwen2-shaped config (q/k/v biases, grouped KV) small enough that methods which build
    real tensors at construction (FourierFT's spectral indices...) count in milliseconds, with
    widths that are multiples of 256 as block-structured methods need."""
    d = tmp_path_factory.mktemp("qwen-small")
    cfg = json.loads((CONFIGS / "qwen2.5-0.5b" / "config.json").read_text())
    cfg.update(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
               num_hidden_layers=2, vocab_size=1024, max_window_layers=2)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


@pytest.mark.parametrize("method", _registered())
def test_every_registered_method_estimates(method, quick_fits, small_qwen):
    from engine.config import ConfigError
    from engine.methods import PARAMS

    mkw, train = _NEEDS.get(method, ({}, {}))
    mkw = {k: v for k, v in mkw.items() if k in {f for f in PARAMS[method].__dataclass_fields__}}
    # Qwen2.5 has q/k/v biases, so bias-only methods apply too.
    try:
        e = _est(small_qwen, method, train={"batch_size": 2, **train}, data={"max_length": 256}, **mkw)
    except ConfigError as err:
        # Only a clear, method-specific refusal is acceptable, and never for the core methods.
        assert method not in CORE, err
        assert "method" in err.path or "train" in err.path, err
        return
    assert e.peak_allocated > e.components["frozen_weights"] > 0 or method == "full"
    assert e.total_params == 2 * (256 * 256 * 2 + 2 * 256 * 128 + 256 + 2 * 128 + 3 * 256 * 512
                                  + 2 * 256) + 1024 * 256 + 256
    assert e.trainable_params > 0


def test_unknown_architecture_gives_generic_estimate(tmp_path):
    d = tmp_path / "mystery"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "model_type": "mystery-lm", "hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8,
        "intermediate_size": 1024, "vocab_size": 1000}))
    e = _est(str(d))
    assert e.generic and any("generic estimate" in n for n in e.notes)
    assert e.peak_allocated > 0


def test_missing_config_fields_are_named(tmp_path):
    from engine.config import ConfigError

    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "mystery-lm", "hidden_size": 64}))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        _est(str(d))


@pytest.mark.parametrize("field,value", [("train.batch_size", 0), ("data.max_length", -5),
                                         ("train.grad_accum", 0)])
def test_nonsense_sizes_are_rejected(field, value):
    from engine.config import ConfigError
    from engine.estimate import estimate

    cfg = _cfg()
    section, name = field.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError) as info:
        estimate(cfg, "24GB")
    assert info.value.path == field


def test_gpu_names():
    from engine.config import ConfigError
    from engine.estimate.gpus import parse_gpu

    assert parse_gpu("24GB").total_bytes == 24 * GiB
    assert parse_gpu("141 GB").total_bytes == 141 * GiB
    assert parse_gpu("a100-80gb").name == "A100-80GB"
    assert parse_gpu("rtx4090").name == "RTX 4090"
    assert parse_gpu("H100").total_bytes > 79 * GiB
    assert not parse_gpu("T4").bf16
    with pytest.raises(ConfigError, match="A100-40GB"):
        parse_gpu("A100")
    with pytest.raises(ConfigError, match="24GB") as info:
        parse_gpu("Voodoo 5")
    assert "RTX 4090" in str(info.value)


def test_cli_json_and_table(tmp_path, capsys):
    from engine.cli import main

    run = tmp_path / "run.yaml"
    run.write_text(f"model: {{name_or_path: {CONFIGS / 'smollm2-135m'}}}\n")
    assert main(["estimate", str(run), "--gpu", "8GB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] in ("fits", "tight", "exceeds")
    assert set(out["components"]) >= {"frozen_weights", "activations", "logits_loss", "optimizer_states"}
    assert out["total_params"] == 134_515_008
    assert main(["estimate", str(CONFIGS / "smollm2-135m" / "config.json"), "--gpu", "8GB"]) == 0
    table = capsys.readouterr().out
    assert "Peak reserved" in table and "Activations" in table and "8GB" in table
    assert main(["estimate", str(run), "--gpu", "Voodoo 5"]) == 2
    assert "unknown GPU" in capsys.readouterr().err
    assert main(["estimate", str(run), "--gpu", "cpu"]) == 0
    cpu_table = capsys.readouterr().out
    assert "Runtime (Python, PyTorch, data)" in cpu_table and "this machine's CPU" in cpu_table
    assert "weights in float32" in cpu_table


def test_evaluation_is_a_phase_when_the_run_evaluates():
    """Evaluation takes the model's own loss over full logits: with the chunked training loss and
    a large vocabulary it can be the run's peak; without a validation set it does not exist."""
    from engine.estimate.memory import eval_logits_bytes, plan

    with_eval = _est("qwen2.5-0.5b", train={"batch_size": 8, "gradient_checkpointing": True},
                     data={"max_length": 1024, "validation_split": 0.1})
    without = _est("qwen2.5-0.5b", train={"batch_size": 8, "gradient_checkpointing": True},
                   data={"max_length": 1024, "validation_split": 0.0})
    assert "eval" in with_eval.phases and "eval" not in without.phases
    assert with_eval.peak_phase == "eval" and with_eval.device_total > without.device_total
    # bf16 logits, their fp32 copy and the fp32 log-softmax: 10 bytes a logit for 8192 rows.
    p = plan(_cfg("qwen2.5-0.5b", data={"validation_split": 0.1}))
    assert eval_logits_bytes(p, 8192) == 8192 * 151936 * 10
    assert with_eval.components["logits_loss"] == eval_logits_bytes(p, 8 * 1024)
