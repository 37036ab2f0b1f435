"""Export, merge, weighted merge and GGUF on tiny offline models: the outputs are checked the
way a receiver would use them (plain peft, plain transformers, transformers' GGUF loader)."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from engine.export import (
    ExportError,
    export_adapter,
    export_gguf,
    export_merged,
    load_run,
    merge_adapters,
)
from engine.export.testing import make_adapter_run

IDS = torch.tensor([[1, 5, 9, 14, 20, 3, 7, 42, 11, 60]])


def logits(model, ids=IDS):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def fresh_base(path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def with_adapter(base_dir, adapter_dir):
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh_base(base_dir), str(adapter_dir))


@pytest.fixture(scope="module")
def make_run(tiny_model_dir, tmp_path_factory):
    """Synthetic runs (real method builders, perturbed adapters), cached per module."""
    cache = {}

    def make(method="lora", seed=0, **kw):
        key = (method, seed, tuple(sorted(kw.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp(f"{method}-{seed}")
            cache[key] = make_adapter_run(root / "run", tiny_model_dir, method, seed=seed, **kw)
        return cache[key]

    return make


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# ---- adapter export ---------------------------------------------------------------------------

def test_exported_adapter_loads_in_plain_peft_with_identical_logits(make_run, tiny_model_dir, tmp_path):
    run = make_run("lora")
    res = export_adapter(run, tmp_path / "out")
    out = tmp_path / "out"
    assert res.path == out.absolute() and res.note is None
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= set(res.files)
    exported = logits(with_adapter(tiny_model_dir, out))
    original = logits(with_adapter(tiny_model_dir, run / "adapter"))
    assert torch.equal(exported, original)
    assert (exported - logits(fresh_base(tiny_model_dir))).abs().max() > 1e-3  # the adapter is live
    card = (out / "README.md").read_text()
    for needle in (str(tiny_model_dir), "lora", "data.jsonl", "`lr`", "final training loss", "1.2500",
                   "evaluation loss: 1.4000", "PeftModel.from_pretrained", "modules adapted", "q_proj"):
        assert needle in card, needle


def test_export_a_checkpoint_copies_a_tokenizer_in(make_run, tiny_model_dir, tmp_path):
    run = make_run("lora", seed=3, checkpoints=(2, 4))
    info = load_run(run)
    assert [label for label, _ in info.sources()] == ["final", "checkpoint-4", "checkpoint-2"]
    export_adapter(run, tmp_path / "c2", which="2")
    assert (tmp_path / "c2" / "tokenizer_config.json").exists()
    a = logits(with_adapter(tiny_model_dir, tmp_path / "c2"))
    b = logits(with_adapter(tiny_model_dir, run / "checkpoints" / "checkpoint-2"))
    assert torch.equal(a, b)
    with pytest.raises(ExportError, match="checkpoint-9"):
        export_adapter(run, tmp_path / "c9", which="checkpoint-9")


# ---- merge ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "qlora"])
def test_merged_model_matches_the_unmerged_peft_model(method, make_run, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run(method)
    out = tmp_path / "merged"
    res = export_merged(run, out, dtype="float32", max_shard_size="100KB")
    assert res.kind == "merged" and res.details["dtype"] == "float32"
    assert (out / "model.safetensors.index.json").exists() and len(res.details["shards"]) > 1  # sharded
    assert (out / "generation_config.json").exists() and (out / "README.md").exists()
    assert not list(out.glob("adapter_*")) and not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # qlora: merged into full precision, not 4-bit
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    assert AutoTokenizer.from_pretrained(out).chat_template
    # The reference: the same adapter on a freshly loaded full-precision base.
    reference = logits(with_adapter(tiny_model_dir, run / "adapter"))
    got = logits(merged)
    assert (got - reference).abs().max() < 1e-4
    assert (got - logits(fresh_base(tiny_model_dir))).abs().max() > 1e-3


def test_merge_in_bfloat16(make_run, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    export_merged(make_run("lora"), out, dtype="bf16")
    assert json.loads((out / "config.json").read_text()).get("dtype") == "bfloat16"
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())
    AutoModelForCausalLM.from_pretrained(out)


def test_prompt_tuning_cannot_merge_and_exports_the_adapter(make_run, tiny_model_dir, tmp_path):
    run = make_run("prompt_tuning")
    res = export_merged(run, tmp_path / "pt")
    assert res.kind == "adapter"
    assert "cannot be merged" in res.note and "virtual tokens" in res.note
    assert (tmp_path / "pt" / "adapter_config.json").exists()
    model = with_adapter(tiny_model_dir, tmp_path / "pt")
    assert torch.equal(logits(model), logits(with_adapter(tiny_model_dir, run / "adapter")))
    with pytest.raises(ExportError, match="cannot be merged"):
        export_gguf(run, tmp_path / "pt-gguf", "f16")
    assert not (tmp_path / "pt-gguf").exists()


# ---- atomic outputs ---------------------------------------------------------------------------

def test_failure_mid_write_leaves_no_half_written_folder(make_run, tmp_path, monkeypatch):
    import engine.export.merge as merge_mod

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    # Fail after the weight shards are written: the temporary folder is full of files by then.
    monkeypatch.setattr(merge_mod, "copy_tokenizer_files", disk_full)
    with pytest.raises(ExportError, match="Not enough disk space"):
        export_merged(make_run("lora"), tmp_path / "merged", max_shard_size="100KB")
    assert not (tmp_path / "merged").exists()
    assert leftovers(tmp_path) == []


def test_read_only_location_leaves_nothing(make_run, tmp_path):
    if os.geteuid() == 0:
        parent = "/sys"  # root ignores permission bits; sysfs refuses new folders even to root
        target = os.path.join(parent, "peft-studio-export-test")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        parent, target = str(ro), str(ro / "adapter")
    try:
        with pytest.raises(ExportError, match="Cannot write"):
            export_adapter(make_run("lora"), target)
        assert not os.path.exists(target)
        assert [n for n in os.listdir(parent) if ".partial-" in n] == []
    finally:
        if parent != "/sys":
            os.chmod(parent, 0o755)


def test_existing_output_is_kept_unless_forced(make_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export_adapter(make_run("lora"), out)
    assert (out / "keep.txt").read_text() == "mine"
    export_adapter(make_run("lora"), out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "adapter_model.safetensors").exists()
    assert leftovers(tmp_path) == []


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ExportError, match="not a run folder"):
        load_run(tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        load_run(tmp_path / "missing")


# ---- weighted merge ---------------------------------------------------------------------------

def _delta(peft_model, module_suffix="layers.0.self_attn.q_proj"):
    for name, mod in peft_model.named_modules():
        if name.endswith(module_suffix) and hasattr(mod, "get_delta_weight"):
            return mod.get_delta_weight(peft_model.active_adapter).detach().clone()
    raise AssertionError(module_suffix)


def test_weighted_linear_1_0_equals_the_first_adapter(make_run, tiny_model_dir, tmp_path):
    a, b = make_run("lora", seed=1), make_run("lora", seed=2)
    res = merge_adapters([a, b], "1,0", tmp_path / "w", method="linear")
    assert res.kind == "weighted" and (tmp_path / "w" / "adapter_model.safetensors").exists()
    assert (tmp_path / "w" / "README.md").exists()
    merged = logits(with_adapter(tiny_model_dir, tmp_path / "w"))
    first = logits(with_adapter(tiny_model_dir, a / "adapter"))
    second = logits(with_adapter(tiny_model_dir, b / "adapter"))
    assert (merged - first).abs().max() < 1e-4
    assert (merged - second).abs().max() > 1e-3


def test_weighted_cat_is_the_weighted_sum_of_deltas(make_run, tiny_model_dir, tmp_path):
    a, b = make_run("lora", seed=1), make_run("lora", seed=2)
    merge_adapters([a, b], [0.7, 0.3], tmp_path / "cat", method="cat")
    da = _delta(with_adapter(tiny_model_dir, a / "adapter"))
    db = _delta(with_adapter(tiny_model_dir, b / "adapter"))
    dm = _delta(with_adapter(tiny_model_dir, tmp_path / "cat"))
    assert torch.allclose(dm, 0.7 * da + 0.3 * db, atol=1e-5)
    assert json.loads((tmp_path / "cat" / "adapter_config.json").read_text())["r"] == 32  # ranks add up


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties", "svd"])
def test_weighted_pruning_merges_load_and_differ_from_inputs(method, make_run, tiny_model_dir, tmp_path):
    a, b = make_run("lora", seed=1), make_run("lora", seed=2)
    res = merge_adapters([a, b], "0.7,0.3", tmp_path / method, method=method, density=0.5 if method != "svd" else None)
    assert res.details["density"] == (0.5 if method != "svd" else None)
    merged = logits(with_adapter(tiny_model_dir, tmp_path / method))
    for src in (a, b):
        assert (merged - logits(with_adapter(tiny_model_dir, src / "adapter"))).abs().max() > 1e-4
    if method.startswith("dare"):  # random pruning is seeded: the same call gives the same adapter
        merge_adapters([a, b], "0.7,0.3", tmp_path / "again", method=method, density=0.5)
        again = logits(with_adapter(tiny_model_dir, tmp_path / "again"))
        assert torch.equal(merged, again)


def test_weighted_merge_refuses_what_it_cannot_do(make_run, tmp_path):
    a, b = make_run("lora", seed=1), make_run("lora", seed=2)
    with pytest.raises(ExportError, match="one weight per adapter"):
        merge_adapters([a, b], "1", tmp_path / "x")
    with pytest.raises(ExportError, match="equal rank"):
        merge_adapters([a, make_run("lora", seed=4, r=4)], "0.5,0.5", tmp_path / "x", method="ties")
    with pytest.raises(ExportError, match="DoRA"):
        merge_adapters([a, make_run("dora")], "0.5,0.5", tmp_path / "x")
    with pytest.raises(ExportError, match="only LoRA"):
        merge_adapters([a, make_run("ia3")], "0.5,0.5", tmp_path / "x")
    with pytest.raises(ExportError, match="Density"):
        merge_adapters([a, b], "0.5,0.5", tmp_path / "x", method="ties", density=1.5)
    assert not (tmp_path / "x").exists()
    res = merge_adapters([a, b], "0.5,0.5", tmp_path / "y", method="linear", density=0.3)
    assert "ignored" in res.note


# ---- GGUF -------------------------------------------------------------------------------------

def test_gguf_f32_round_trip_matches_logits(make_run, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run("lora")
    res = export_gguf(run, tmp_path / "g", "f32", verify=True)
    gguf_file = res.details["gguf_file"]
    assert (tmp_path / "g" / gguf_file).exists() and res.details["max_abs_logit_diff"] < 1e-3
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "g", gguf_file=gguf_file, dtype=torch.float32)
    reference = logits(with_adapter(tiny_model_dir, run / "adapter"))
    assert (logits(back) - reference).abs().max() < 1e-3
    # The tokenizer travels inside the file: same ids, same special tokens, same chat template.
    orig = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tmp_path / "g", gguf_file=gguf_file)
    text = "<|im_start|>user\nWhat is two plus two? 42<|im_end|>\n"
    assert tok(text)["input_ids"] == orig(text)["input_ids"]
    assert tok.eos_token == orig.eos_token and tok.chat_template == orig.chat_template


@pytest.mark.parametrize("qtype,rel_tol", [("f16", 1e-3), ("q8_0", 1e-2)])
def test_gguf_f16_and_q8_0_round_weights_only_a_little(qtype, rel_tol, make_run, tmp_path):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    from engine.export import merged_model

    run = make_run("lora")
    res = export_gguf(run, tmp_path / qtype, qtype, verify=True)
    assert 0 < res.details["max_abs_logit_diff"] < 0.5  # tiny random model: logits are noise-sized
    path = tmp_path / qtype / res.details["gguf_file"]
    types = {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == qtype.upper() and types["blk.0.attn_norm.weight"] == "F32"
    # Weight by weight (after transformers undoes the q/k permute): only rounding error is left.
    merged = merged_model(load_run(run), dtype="float32")[0].state_dict()
    back = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).state_dict()
    for name, w in merged.items():
        err = (back[name] - w).norm() / w.norm()
        assert err < rel_tol, (name, float(err))


def test_gguf_refuses_other_architectures_before_loading():
    from types import SimpleNamespace

    from engine.export.to_gguf import check_gguf_support

    with pytest.raises(ExportError, match="Llama-family"):
        check_gguf_support(SimpleNamespace(model_type="gpt2"))
    # Llama 3's rope scaling is written now (a rope_freqs tensor); dynamic NTK scaling is not.
    with pytest.raises(ExportError, match="rope scaling"):
        check_gguf_support(SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "dynamic"}))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PEFT_STUDIO_SLOW"), reason="set PEFT_STUDIO_SLOW=1: loads the demo model")
def test_demo_model_gguf_round_trip(tmp_path):
    """The real target: SmolLM2 (the demo) with a LoRA adapter, f32 GGUF, loaded back exactly."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from engine.models import load_tokenizer

    run = make_adapter_run(tmp_path / "run", "demo", "lora", scale=0.02)
    res = export_gguf(run, tmp_path / "g", "f32", verify=True)
    assert res.details["max_abs_logit_diff"] < 1e-3
    path = tmp_path / "g" / res.details["gguf_file"]
    fields = GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False
    orig = load_tokenizer("demo")
    back = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    text = orig.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert back.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == text
    assert back(text)["input_ids"] == orig(text)["input_ids"]


# ---- methods that are not peft tuners ---------------------------------------------------------

SELF_SAVING = {"bitfit": {}, "selective": {"last_n_layers": 1}, "bottleneck": {}, "full": {}}


@pytest.fixture(scope="module")
def own_format_run(tiny_model_dir, tiny_model_bias, tmp_path_factory):
    """(run dir, base dir) for a method that saves itself; BitFit needs a model with biases."""
    cache = {}

    def make(method):
        if method not in cache:
            base = tiny_model_bias if method == "bitfit" else tiny_model_dir
            run = make_adapter_run(tmp_path_factory.mktemp(method) / "run", base, method, seed=3, checkpoints=(2,),
                                   **SELF_SAVING[method])
            cache[method] = (run, base)
        return cache[method]

    return make


def tuned_reference(base_dir, saved_dir):
    from engine.methods.storage import load_trained

    return logits(load_trained(fresh_base(base_dir), saved_dir))


@pytest.mark.parametrize("method", list(SELF_SAVING))
def test_own_format_runs_export_reload_and_merge(method, own_format_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import load_trained, method_of

    run, base = own_format_run(method)
    info = load_run(run)
    assert [c.name for c in info.checkpoints] == ["checkpoint-2"], "its checkpoints are sources too"
    expected = tuned_reference(base, info.adapter_dir)
    assert not torch.allclose(expected, logits(fresh_base(base)), atol=1e-3), "the run must change the model"

    adapter_out = export_adapter(run, tmp_path / "adapter").path
    assert method_of(adapter_out) == method
    assert (adapter_out / "README.md").exists() and (adapter_out / "tokenizer_config.json").exists()
    assert not (adapter_out / "trainer_state.json").exists()
    assert torch.allclose(logits(load_trained(fresh_base(base), adapter_out)), expected, atol=1e-6)
    if method in ("bitfit", "selective"):  # the model card's plain-torch recipe
        from safetensors.torch import load_file

        plain = fresh_base(base)
        _, unexpected = plain.load_state_dict(load_file(str(adapter_out / "adapter_model.safetensors")),
                                              strict=False)
        assert not unexpected and torch.allclose(logits(plain), expected, atol=1e-6)
        assert "load_state_dict" in (adapter_out / "README.md").read_text()

    res = export_merged(run, tmp_path / "merged", dtype="float32")
    if method == "bottleneck":
        assert res.kind == "adapter" and "cannot be merged" in res.note
        return
    assert res.kind == "merged"
    merged = AutoModelForCausalLM.from_pretrained(res.path)
    assert torch.allclose(logits(merged), expected, atol=1e-5)
    assert not (res.path / "adapter_config.json").exists()


def test_a_bare_own_format_adapter_folder_is_understood(own_format_run, tmp_path):
    run, base = own_format_run("selective")
    info = load_run(run / "adapter")
    assert info.is_bare_adapter and info.config.method.name == "selective"
    assert info.config.method.last_n_layers == 1
    res = export_merged(run / "adapter", tmp_path / "m", dtype="float32")
    from transformers import AutoModelForCausalLM

    assert torch.allclose(logits(AutoModelForCausalLM.from_pretrained(res.path)),
                          tuned_reference(base, run / "adapter"), atol=1e-5)


def test_own_format_adapter_on_the_wrong_base_is_a_clear_error(own_format_run, tiny_model_dir, tmp_path):
    from engine.methods.storage import read_meta

    run, _ = own_format_run("bitfit")  # biases that the bias-free tiny model does not have
    folder = tmp_path / "moved"
    import shutil

    shutil.copytree(run / "adapter", folder)
    meta = read_meta(folder)
    meta["base_model_name_or_path"] = str(tiny_model_dir)
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="does not fit the base model.*no parameters"):
        export_merged(folder, tmp_path / "out", dtype="float32")
