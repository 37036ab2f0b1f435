"""The methods beyond issue 2: generated peft forms, save formats, clear refusals, compare-methods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError, RunConfig
from engine.methods import get_method, registered
from engine.methods.peft.catalog import NOT_OFFERED, PEFT_METHODS, UNAVAILABLE, peft_field_names

REPO = Path(__file__).resolve().parents[2]


def cfg_for(model_dir, method: dict, **train) -> RunConfig:
    return RunConfig.from_dict({"model": {"name_or_path": str(model_dir)}, "method": method,
                                "train": {"max_steps": 10, **train}})


# ---- peft's forms, generated --------------------------------------------------------------

def test_every_peft_method_is_offered_or_explained():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    issue2 = {"lora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning"}
    for ptype in PEFT_TYPE_TO_CONFIG_MAPPING:
        name = str(ptype.value).lower()
        assert name in registered() or name in NOT_OFFERED or name in issue2, \
            f"peft's {name} is neither offered nor explained: add a line to PEFT_METHODS or NOT_OFFERED"
    assert not UNAVAILABLE, UNAVAILABLE


@pytest.mark.parametrize("name", [n for n in PEFT_METHODS if n in registered()])
def test_generated_fields_match_peft_dataclass(name):
    import dataclasses
    import typing

    from engine.methods import PARAMS
    from engine.methods.peft.tuners import peft_config_class

    m = PEFT_METHODS[name]
    real = peft_config_class(m)
    real_fields = {f.name: f for f in dataclasses.fields(real)}
    hints = typing.get_type_hints(real)
    ours = {f.name: f for f in dataclasses.fields(PARAMS[name])}
    for fname in peft_field_names(PARAMS[name]):
        assert fname in real_fields, f"{name}.{fname} is not a field of {m.config}"
        if fname == "target_modules" or fname in m.defaults:
            continue
        rf = real_fields[fname]
        want = rf.default if rf.default is not dataclasses.MISSING else rf.default_factory()
        got = ours[fname].default if ours[fname].default is not dataclasses.MISSING else ours[fname].default_factory()
        assert got == want, f"{name}.{fname}: default {got!r}, peft says {want!r}"
        real_help = rf.metadata.get("help")
        if real_help:
            real_help = " ".join(real_help) if isinstance(real_help, tuple) else real_help
            assert ours[fname].metadata["help"] == " ".join(real_help.split())
        choices = ours[fname].metadata.get("choices")
        if choices:
            lit = [a for a in typing.get_args(hints[fname]) if typing.get_origin(a) is typing.Literal] or [hints[fname]]
            assert set(c for c in choices if c is not None) == set(typing.get_args(lit[0]))


def test_reading_a_run_file_with_a_peft_method_imports_neither_torch_nor_peft():
    code = ("import sys\nfrom engine.config import RunConfig\n"
            "c = RunConfig.from_dict({'method': {'name': 'vera', 'r': 8, 'target_modules': ['q_proj']}})\n"
            "c.validate(); assert c.method.r == 8\n"
            "assert 'torch' not in sys.modules and 'peft' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_peft_field_values_reach_peft(tiny_model_dir):
    from engine.methods import preflight
    from engine.methods.peft.tuners import peft_config

    cfg = cfg_for(tiny_model_dir, {"name": "loha", "r": 4, "alpha": 2, "target_modules": ["q_proj", "v_proj"],
                                   "layers_to_transform": [1]})
    ctx = preflight(cfg)
    conf = peft_config(PEFT_METHODS["loha"], cfg, ctx)
    assert (conf.r, conf.alpha, set(conf.target_modules), conf.layers_to_transform) == (4, 2, {"q_proj", "v_proj"}, [1])


def test_adalora_reallocates_ranks_in_any_training_loop(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.methods import apply_method

    cfg = cfg_for(tiny_model_dir, {"name": "adalora", "init_r": 6, "target_r": 2, "target_modules": ["q_proj"]},
                  max_steps=4)
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(5, 300, (2, 12))
    for _ in range(4):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    assert model.peft_config["default"].rank_pattern, "update_and_allocate was not called after the steps"


def test_adalora_schedule_continues_from_the_checkpoint_on_resume(tiny_model_dir, tmp_path, monkeypatch):
    """A resumed AdaLoRA run passes the trainer's global step to update_and_allocate (not a count
    restarted at 1), loads its checkpoint although ranks were pruned before it, and with the rank
    pattern and importance scores restored continues the uninterrupted run's losses."""
    from peft.tuners.adalora.model import AdaLoraModel

    from engine.events import CallbackSink, ListSink
    from engine.methods.peft.tuners import ADALORA_STATE
    from engine.training import StopFlag, train

    seen: list[int] = []
    real = AdaLoraModel.update_and_allocate

    def spy(self, global_step):
        seen.append(global_step)
        return real(self, global_step)

    monkeypatch.setattr(AdaLoraModel, "update_and_allocate", spy)
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"Ahoy! {i} plus {i} be {2 * i}."} for i in range(24)]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")

    def config(sub):
        # Warm-up to step 1, re-allocation at steps 2-5, the final allocation at step 6 (10 - tfinal),
        # then masking with that pattern; the stop falls inside the budgeting phase.
        return RunConfig.from_dict({
            "model": {"name_or_path": str(tiny_model_dir)}, "data": {"path": str(data), "max_length": 48},
            "method": {"name": "adalora", "init_r": 4, "target_r": 2, "target_modules": ["q_proj", "v_proj"],
                       "tinit": 1, "tfinal": 4, "deltaT": 1},
            "train": {"max_steps": 10, "batch_size": 4, "lr": 2e-2, "logging_steps": 1},
            "output_dir": str(tmp_path / sub)})

    full_sink = ListSink()
    assert train(config("a"), sinks=[full_sink]).status == "finished"
    full = {e["step"]: e["loss"] for e in full_sink.of("step")}
    assert seen == list(range(1, 11))

    seen.clear()
    cfg, stop = config("b"), StopFlag()
    first = train(cfg, sinks=[CallbackSink(lambda ev: ev["event"] == "step" and ev["step"] >= 3 and stop.set())],
                  stop=stop)
    assert first.status == "stopped", first.error
    stopped_at = len(seen)
    assert 3 <= stopped_at < 6 and seen == list(range(1, stopped_at + 1))
    checkpoint = Path(cfg.output_dir) / "checkpoints" / f"checkpoint-{stopped_at}"
    assert (checkpoint / ADALORA_STATE).exists()

    seen.clear()
    cfg.train.resume_from = "latest"
    resumed_sink = ListSink()
    resumed = train(cfg, sinks=[resumed_sink])
    assert resumed.status == "finished", resumed.error
    assert seen == list(range(stopped_at + 1, 11)), "the rank schedule restarted instead of continuing"
    losses = {e["step"]: e["loss"] for e in resumed_sink.of("step")}
    assert min(losses) == stopped_at + 1
    for step, loss in losses.items():
        assert loss == pytest.approx(full[step], rel=1e-5, abs=1e-6), step


# ---- refusals before any weights load -------------------------------------------------------

@pytest.fixture
def no_weights(monkeypatch):
    import engine.training.build

    def refuse(*a, **kw):
        raise AssertionError("weights were loaded before the bad combination was refused")

    monkeypatch.setattr(engine.training.build, "load_model", refuse)


def _config_only_model(path: Path, config) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    return path


def test_bitfit_without_biases_fails_clearly_before_weights_load(tiny_model_dir, tmp_path, no_weights,
                                                                   monkeypatch):
    from engine.events import ListSink
    from engine.training import train

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = cfg_for(tiny_model_dir, {"name": "bitfit"})
    cfg.output_dir = str(tmp_path / "run")
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "failed"
    failed = sink.of("failed")[0]
    assert "this model (llama) has no bias parameters; choose another method" in failed["error"]
    assert "Traceback" not in failed["error"]


@pytest.mark.parametrize("method,extra,expect", [
    ({"name": "selective", "last_n_layers": 5}, {}, "has only 2 decoder layers"),
    ({"name": "selective", "param_types": ["heads"]}, {}, "unknown parameter type"),
    ({"name": "bitfit", "subset": ["lm_head"]}, {}, "matches no bias"),
    ({"name": "adalora"}, {"max_steps": -1}, "set train.max_steps or method.total_step"),
    ({"name": "trainable_tokens"}, {}, "list the token ids"),
    ({"name": "vera", "target_modules": ["q_proj", "nope"]}, {}, "nope not found"),
    ({"name": "ln_tuning", "target_modules": ["nope"]}, {}, "nope not found"),
    ({"name": "boft", "boft_block_size": 4, "boft_block_num": 2}, {}, "BOFT: .*block"),
    ({"name": "selective", "name_patterns": ["nothing_like_this"]}, {}, "selects no parameter"),
])
def test_bad_method_settings_are_refused_by_preflight(method, extra, expect, tiny_model_bias, no_weights):
    from engine.methods import preflight

    with pytest.raises(ConfigError, match=expect):
        preflight(cfg_for(tiny_model_bias, method, **extra))


def test_full_fine_tuning_refuses_a_quantized_base(tiny_model_dir, no_weights):
    from engine.methods import preflight

    cfg = cfg_for(tiny_model_dir, {"name": "full"})
    cfg.model.quantization = "nf4"
    with pytest.raises(ConfigError, match="cannot train on a quantized base"):
        preflight(cfg)


def test_methods_that_need_a_module_the_architecture_lacks(tmp_path, no_weights):
    from transformers import MambaConfig, Qwen2Config

    from engine.methods import preflight

    mamba = _config_only_model(tmp_path / "mamba", MambaConfig(hidden_size=64, num_hidden_layers=2,
                                                              vocab_size=320, state_size=8))
    with pytest.raises(ConfigError, match="lacks") as e:
        preflight(cfg_for(mamba, {"name": "bottleneck"}))
    assert "method.placement" in str(e.value)
    qwen = _config_only_model(tmp_path / "qwen2", Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                             num_key_value_heads=2, intermediate_size=128,
                                                             vocab_size=320))
    with pytest.raises(ConfigError, match="Adaption prompt supports .*llama.*not qwen2"):
        preflight(cfg_for(qwen, {"name": "adaption_prompt"}))


@pytest.mark.parametrize("name", [n for n in registered() if not get_method(n).can_merge])
def test_a_merge_of_a_method_that_cannot_merge_is_refused_with_the_reason(name):
    from engine.methods.storage import check_merge, merge_trained

    spec = get_method(name)
    assert spec.merge_note, f"{name} cannot merge but does not say why"
    with pytest.raises(ConfigError, match="cannot be merged"):
        check_merge(name)
    with pytest.raises(ConfigError, match="cannot be merged"):
        merge_trained(object(), name)  # refused before it touches the model


# ---- save formats -----------------------------------------------------------------------------

def _build(model_dir, method: dict):
    from transformers import AutoModelForCausalLM

    from engine.methods import apply_method

    cfg = cfg_for(model_dir, method)
    return cfg, apply_method(AutoModelForCausalLM.from_pretrained(model_dir), cfg)


def _nudge(model):
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))


@pytest.mark.parametrize("method,prefix", [({"name": "bitfit"}, None), ({"name": "selective", "last_n_layers": 1}, None),
                                           ({"name": "bottleneck", "placement": "pfeiffer"}, None)])
def test_non_peft_methods_save_only_their_tensors_and_restore_them(method, prefix, tiny_model_bias, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import load_trained, method_of, saveable

    _, model = _build(tiny_model_bias, method)
    _nudge(model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    saveable(model, get_method(method["name"])).save_pretrained(tmp_path / "a")
    saved = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    assert set(saved) == trained
    if method["name"] == "bitfit":
        assert all(n.endswith(".bias") for n in saved)
    if method["name"] == "selective":
        assert all(".layers.1." in n for n in saved)
    if method["name"] == "bottleneck":
        assert all(".mlp.down_proj.bottleneck_adapter." in n for n in saved)
        assert len(json.loads((tmp_path / "a" / "adapter_config.json").read_text())["targets"]) == 2
    assert method_of(tmp_path / "a") == method["name"]
    ids = torch.tensor([[1, 5, 9, 14, 20]])
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids).logits
        got = load_trained(AutoModelForCausalLM.from_pretrained(tiny_model_bias), tmp_path / "a")(input_ids=ids).logits
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["bitfit", "bottleneck"])
def test_non_peft_methods_train_on_a_4bit_base(name, tiny_model_bias, tmp_path):
    pytest.importorskip("bitsandbytes")
    import torch

    from engine.methods import apply_method
    from engine.methods.storage import load_trained, saveable
    from engine.models import load_model

    cfg = cfg_for(tiny_model_bias, {"name": name})
    cfg.model.quantization = "nf4"
    model = apply_method(load_model(cfg.model, device="cpu"), cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(5, 300, (2, 12))
    losses = []
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    saveable(model, get_method(name)).save_pretrained(tmp_path / "a")
    with torch.no_grad():
        want = model(input_ids=ids).logits
        got = load_trained(load_model(cfg.model, device="cpu"), tmp_path / "a").eval()(input_ids=ids).logits
    assert torch.equal(got, want)


def test_a_partial_adapter_refuses_a_different_base(tiny_model_bias, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import load_trained, saveable

    _, model = _build(tiny_model_bias, {"name": "bitfit"})
    saveable(model, get_method("bitfit")).save_pretrained(tmp_path / "a")
    with pytest.raises(ConfigError, match="does not fit this base model"):
        load_trained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "a")


def test_full_fine_tuning_saves_a_plain_model_folder(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import method_of, save_adapter_atomic, saveable

    _, model = _build(tiny_model_dir, {"name": "full"})
    assert all(p.requires_grad for p in model.parameters())
    _nudge(model)
    model.config.use_cache = False  # as in training
    save_adapter_atomic(saveable(model, get_method("full")), None, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "adapter_config.json").exists()  # transformers would treat it as peft
    assert json.loads((tmp_path / "adapter" / "config.json").read_text())["use_cache"] is True
    assert method_of(tmp_path / "adapter") == "full"
    ids = torch.tensor([[1, 5, 9, 14, 20]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "adapter")(input_ids=ids).logits,
                           model(input_ids=ids).logits)


# ---- selection rules ------------------------------------------------------------------------

def test_selective_selection_rules():
    from engine.methods.families.selective import SelectiveParams, select

    names = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"]
    for i in range(3):
        names += [f"model.layers.{i}.self_attn.q_proj.weight", f"model.layers.{i}.self_attn.q_proj.bias",
                  f"model.layers.{i}.mlp.down_proj.weight", f"model.layers.{i}.input_layernorm.weight"]
    last = select(names, SelectiveParams(last_n_layers=1))
    assert last == [n for n in names if ".layers.2." in n]
    assert select(names, SelectiveParams(last_n_layers=2, param_types=["norm"])) == [
        "model.layers.1.input_layernorm.weight", "model.layers.2.input_layernorm.weight"]
    assert select(names, SelectiveParams(name_patterns=["lm_head", r"^model\.norm"])) == [
        "lm_head.weight", "model.norm.weight"]
    assert len(select(names, SelectiveParams(last_n_layers=0, param_types=["bias"]))) == 3
    assert len(select(names, SelectiveParams(last_n_layers=0))) == 12


def test_bottleneck_sites_across_architectures():
    from engine.methods.families.bottleneck import sites

    gpt2 = ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc",
            "transformer.h.0.mlp.c_proj"]
    assert sites(gpt2, "houlsby") == {"attention": ["transformer.h.0.attn.c_proj"], "mlp": ["transformer.h.0.mlp.c_proj"]}
    neox = ["gpt_neox.layers.0.attention.dense", "gpt_neox.layers.0.mlp.dense_4h_to_h"]
    assert sites(neox, "pfeiffer") == {"mlp": ["gpt_neox.layers.0.mlp.dense_4h_to_h"]}


# ---- compare-methods --------------------------------------------------------------------------

def test_compare_methods_writes_one_row_per_method(tiny_model_dir, tmp_path):
    import os

    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f"Ahoy! {i} plus {i} be {2 * i}."} for i in range(24)]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    run = tmp_path / "run.yaml"
    run.write_text(f"model: {{name_or_path: {tiny_model_dir}}}\ndata: {{path: {data}, max_length: 48}}\n"
                   "train: {max_steps: 2, batch_size: 4, lr: 5.0e-3}\n", encoding="utf-8")
    doc = tmp_path / "methods.md"
    doc.write_text("# Methods\n\nintro\n", encoding="utf-8")
    env = {**os.environ, "PEFT_STUDIO_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "engine", "compare-methods", str(run), "--methods", "lora,bitfit",
                           "--out", str(tmp_path / "cmp"), "--doc", str(doc)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr  # bitfit cannot run on this bias-free model
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["lora", "bitfit"]
    assert lines[0].split("|")[5].strip() == "peak RSS (CPU)"  # the header says what was measured
    lora = lines[1].split("|")
    assert lora[3].strip().endswith("%)") and "MiB" in lora[5]
    assert "peak resident set size" in table
    peak = json.loads((tmp_path / "cmp" / "lora" / "compare-peak.json").read_text())
    assert peak["device"] == "cpu" and peak["peak_bytes"] > 0  # the child measured itself too
    assert "no bias parameters" in lines[2]
    # the forgetting check's columns (issue 16): NLL base → tuned and changed general answers
    assert lines[0].split("|")[-4].strip() == "general NLL (base → tuned)"
    assert "→" in lora[-4] and "%)" in lora[-4] and lora[-3].strip().endswith("of 16")
    text = doc.read_text()
    assert text.startswith("# Methods\n\nintro") and "Machine:" in text and "| lora |" in text


def test_compare_peak_memory_on_cuda_is_max_allocated_reset_per_method(monkeypatch):
    """On a GPU the peak is torch.cuda.max_memory_allocated(), reset before the method trains, never
    the allocator's reserved memory (CUDA itself is faked here; tests/gpu run it for real)."""
    import torch

    from engine import compare

    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: calls.append("max") or 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a, **k: pytest.fail("reserved memory was read"))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a, **k: pytest.fail("reserved memory was read"))
    compare.reset_peak_memory("cuda")
    assert compare.peak_memory("cuda") == 3 * 2**30 and calls == ["reset", "max"]
    compare.reset_peak_memory("cpu")  # nothing to reset: a process per method
    assert compare.peak_memory("cpu") > 0 and calls == ["reset", "max"]


def test_compare_table_names_the_peak_it_reports(tmp_path):
    from engine import compare

    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"event": "started", "device": "cuda", "trainable_params": 10, "total_params": 1000},
        {"event": "step", "step": 1, "loss": 2.0, "mem_reserved": 9 * 2**30, "tokens_per_s": 100.0},
        {"event": "finished", "metrics": {}}]) + "\n", encoding="utf-8")
    gpu = compare.summarize(compare.Row("lora", 1e-3), run, {"device": "cuda", "peak_bytes": 3 * 2**30})
    assert (gpu.peak_bytes, gpu.peak_kind) == (3 * 2**30, "cuda")  # not the 9 GiB reserved
    cpu = compare.summarize(compare.Row("ia3", 1e-2), run, {"device": "cpu", "peak_bytes": 2**30})

    def header(rows):
        return compare.table(rows, None, False).splitlines()[0].split("|")[5].strip()

    assert header([gpu]) == "peak GPU memory (max allocated)"
    assert "3.0 GiB" in compare.table([gpu], None, False).splitlines()[2]
    assert header([cpu]) == "peak RSS (CPU)"
    mixed = compare.table([gpu, cpu], None, False).splitlines()
    assert mixed[0].split("|")[5].strip() == "peak memory"
    assert "3.0 GiB (GPU)" in mixed[2] and "1.0 GiB (RSS)" in mixed[3]


def test_docs_list_every_method():
    text = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    missing = [n for n in registered() if f"`{n}`" not in text]
    assert not missing, f"docs/methods.md does not list {missing}"
