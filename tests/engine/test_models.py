"""Model sources, dtype, quantization, pad tokens, and checks that run before weights load."""

from __future__ import annotations

import json

import pytest
import torch

from engine.config import ConfigError, RunConfig
from engine.models import ModelError, load_model, load_tokenizer, resolve_dtype, resolve_source


def test_auto_dtype_is_fp32_on_cpu():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16


def test_local_folder_and_config_json_path(tiny_model_dir):
    assert resolve_source(str(tiny_model_dir)).kind == "folder"
    assert resolve_source(str(tiny_model_dir / "config.json")).path == str(tiny_model_dir)


def test_missing_folder_and_uncached_hub_id_explain_themselves(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_source(str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="not in the local Hugging Face cache") as err:
        resolve_source("someone/not-a-cached-model-xyz")
    assert "huggingface-cli download someone/not-a-cached-model-xyz" in str(err.value)


def test_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_source(str(tmp_path / "m"))


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelError, match="GGUF file .* does not exist"):
        resolve_source(str(tmp_path / "model.gguf"))


def test_tokenizer_without_pad_token_gets_one(tiny_model_no_template):
    tok = load_tokenizer(str(tiny_model_no_template))
    assert tok.pad_token is not None and tok.pad_token_id is not None
    assert tok.padding_side == "right"


@pytest.mark.parametrize("quant, cls_name", [("nf4", "Linear4bit"), ("fp4", "Linear4bit"),
                                             ("int8", "Linear8bitLt")])
def test_bitsandbytes_quantization_loads_on_cpu(tiny_model_dir, quant, cls_name):
    cfg = RunConfig().model
    cfg.name_or_path = str(tiny_model_dir)
    model = load_model(cfg, quantization=quant, device="cpu")
    kinds = {type(m).__name__ for m in model.modules()}
    assert cls_name in kinds
    if quant != "int8":
        qc = model.config.quantization_config
        qc = qc.to_dict() if hasattr(qc, "to_dict") else qc
        assert qc["bnb_4bit_quant_type"] == quant and qc["bnb_4bit_use_double_quant"] is True
    with torch.no_grad():
        out = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(out).all()


def _cfg(model_dir, **method):
    cfg = RunConfig()
    cfg.model.name_or_path = str(model_dir)
    for k, v in method.items():
        setattr(cfg.method, k, v)
    return cfg


def test_preflight_rejects_unknown_target_modules_before_loading(tiny_model_dir):
    from engine.methods import preflight

    cfg = _cfg(tiny_model_dir, target_modules=["q_proj", "query_key_value"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.path == "method.target_modules"
    assert "query_key_value" in str(err.value) and "q_proj" in str(err.value)


def test_qlora_without_bitsandbytes_is_rejected_with_the_reason(tiny_model_dir, monkeypatch):
    import engine.methods.apply as models  # where preflight looks bitsandbytes up
    from engine.methods import preflight

    monkeypatch.setattr(models, "check_bitsandbytes",
                        lambda: "bitsandbytes is not usable here (ImportError: no module).")
    cfg = _cfg(tiny_model_dir).with_overrides(["method.name=qlora"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.path == "method.name" and "bitsandbytes is not usable" in str(err.value)


def test_auto_targets_per_architecture(tiny_model_dir):
    from engine.inspect import inspect_model

    info = inspect_model(str(tiny_model_dir))
    assert info["default_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj"]
    assert info["architecture"] == "LlamaForCausalLM" and info["has_chat_template"] is True
    assert info["total_params"] > 0


def test_rslora_and_targets_reach_the_adapter_config(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from engine.methods import apply_method

    cfg = _cfg(tiny_model_dir, use_rslora=True, target_modules="auto", r=4)
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    model.save_pretrained(tmp_path / "a")
    conf = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert conf["use_rslora"] is True and conf["r"] == 4
    assert set(conf["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"}


def test_loraplus_gives_b_matrices_a_higher_lr(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from engine.methods import apply_method
    from engine.training.arguments import loraplus_optimizer

    cfg = _cfg(tiny_model_dir).with_overrides(["train.loraplus_lr_ratio=16", "train.lr=1e-4"])
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    opt = loraplus_optimizer(model, cfg)
    lrs = {round(g["lr"], 10) for g in opt.param_groups if g["params"]}
    assert lrs == {1e-4, 16e-4}  # A matrices at lr, B matrices at 16 × lr


def test_inspection_lists_target_modules_by_the_kind_each_method_adapts(tiny_model_dir):
    from engine.inspect import inspect_model

    c = inspect_model(str(tiny_model_dir))["target_candidates"]
    assert c["linear"]["auto"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert c["norm"]["names"] == ["input_layernorm", "post_attention_layernorm", "norm"]
    assert set(c["norm"]["auto"]) <= set(c["norm"]["names"]) and c["norm"]["auto"]
    assert c["embedding"] == {"names": ["embed_tokens"], "auto": ["embed_tokens"]}
    assert c["blocks"] == {"names": [], "auto": []}


def test_inspection_names_the_methods_the_architecture_cannot_take(tiny_model_dir, tiny_model_bias):
    from engine.inspect import inspect_model

    problems = inspect_model(str(tiny_model_dir))["unavailable_methods"]
    assert "no bias parameters" in problems["bitfit"]
    assert not {"lora", "bottleneck", "trainable_tokens", "adalora"} & set(problems)  # fields to fill are not "unavailable"
    assert "bitfit" not in inspect_model(str(tiny_model_bias))["unavailable_methods"]
