"""GGUF for every architecture, its types, its consumer checks, the Ollama Modelfile, the GGUF
LoRA adapter, sizes before export and the export-format registry — on tiny offline models.

Tests that need llama.cpp itself skip without ``llama-cpp-python`` (pip install
'peft-studio[llama]'); the transformers read-back tests run everywhere."""

from __future__ import annotations

import json

import pytest
import torch

from engine.export import ExportError, export_gguf, load_run, merged_model
from engine.export.testing import TINY_ARCHS, make_adapter_run, make_tiny_arch


@pytest.fixture(scope="module")
def arch_run(tmp_path_factory):
    """(run dir, base dir) of a LoRA run on a tiny model of each architecture, built once."""
    cache = {}

    def make(kind, **overrides):
        key = (kind, repr(sorted(overrides.items())))
        if key not in cache:
            root = tmp_path_factory.mktemp(kind)
            base = make_tiny_arch(kind, root / "base", **overrides)
            cache[key] = (make_adapter_run(root / "run", base, "lora", scale=0.1), base)
        return cache[key]

    return make


def _ids(tokenizer):
    msgs = [{"role": "user", "content": "What is two plus two? The capital of France is Paris."}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def _read_back(path):
    from engine.export.to_gguf import load_with_transformers

    return load_with_transformers(path)


# ---- every architecture, read back by transformers ---------------------------------------------

@pytest.mark.parametrize("kind", TINY_ARCHS)
def test_every_architecture_exports_f16_that_transformers_reads_back(kind, arch_run, tmp_path):
    run, _ = arch_run(kind)
    res = export_gguf(run, tmp_path / "g", "f16", verify=False)
    path = tmp_path / "g" / res.details["gguf_file"]
    merged, tokenizer, _, _ = merged_model(load_run(run), dtype="float32")
    back = _read_back(path)
    # The file holds the merged weights rounded to f16 (matrices; norms stay f32), nothing else:
    # permutes and the Gemma norm shift are undone exactly by transformers' reader. The merged
    # model in f16 answers exactly like the file, position by position.
    ref = {k: v.half().float() if v.dim() > 1 else v for k, v in merged.state_dict().items()}
    merged.load_state_dict(ref)
    ids = _ids(tokenizer)
    with torch.no_grad():
        want, got = merged(ids).logits[0], back(ids).logits[0]
    assert torch.equal(want.argmax(-1), got.argmax(-1)), "top-1 token differs at some position"
    # transformers' GGUF reader ignores Gemma 3's per-layer attention kinds (sliding vs full, with
    # their own rope bases), so its logits move a little; llama.cpp reads them (test below).
    assert (want - got).abs().max() < (2.0 if kind == "gemma3" else 1e-4)
    for name, w in back.state_dict().items():
        if name == "lm_head.weight" and name not in ref:
            continue
        assert torch.allclose(w, ref[name], atol=1e-6, rtol=0), name
    if getattr(merged.config, "tie_word_embeddings", False):
        from gguf import GGUFReader

        names = {t.name for t in GGUFReader(str(path)).tensors}
        assert "output.weight" not in names, "tied embeddings must not be written twice"


def test_qwen2_keeps_biases_and_tied_embeddings(arch_run, tmp_path):
    from gguf import GGUFReader

    run, _ = arch_run("qwen2")
    res = export_gguf(run, tmp_path / "g", "f32", verify=False)
    reader = GGUFReader(str(tmp_path / "g" / res.details["gguf_file"]))
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= names
    assert "output.weight" not in names
    assert reader.fields["general.architecture"].contents() == "qwen2"
    # transformers loads a Qwen2 model's tokenizer with Qwen2's split rule, and so must llama.cpp.
    assert reader.fields["tokenizer.ggml.pre"].contents() == "qwen2"


def test_gemma2_metadata_from_its_config(arch_run, tmp_path):
    from gguf import GGUFReader

    run, base = arch_run("gemma2")
    res = export_gguf(run, tmp_path / "g", "f32", verify=False)
    f = GGUFReader(str(tmp_path / "g" / res.details["gguf_file"])).fields
    cfg = json.loads((base / "config.json").read_text())
    assert f["gemma2.attn_logit_softcapping"].contents() == pytest.approx(cfg["attn_logit_softcapping"])
    assert f["gemma2.final_logit_softcapping"].contents() == pytest.approx(cfg["final_logit_softcapping"])
    assert f["gemma2.attention.sliding_window"].contents() == cfg["sliding_window"]
    assert f["gemma2.attention.key_length"].contents() == 256
    assert f["tokenizer.ggml.model"].contents() == "llama"
    assert f["tokenizer.ggml.add_space_prefix"].contents() is False
    eot = f["tokenizer.ggml.eot_token_id"].contents()
    assert f["tokenizer.ggml.tokens"].contents()[eot] == "<end_of_turn>"


def test_unsupported_models_are_refused_before_any_work(tmp_path):
    from types import SimpleNamespace

    from transformers import Gemma2Config

    from engine.export.to_gguf import check_gguf_support

    with pytest.raises(ExportError, match="cannot write gpt2.*convert_hf_to_gguf"):
        check_gguf_support(SimpleNamespace(model_type="gpt2"))
    with pytest.raises(ExportError, match="multimodal Gemma 3"):
        check_gguf_support(SimpleNamespace(model_type="gemma3"))
    with pytest.raises(ExportError, match="query_pre_attn_scalar"):
        check_gguf_support(Gemma2Config(head_dim=256, query_pre_attn_scalar=144, num_hidden_layers=26))
    with pytest.raises(ExportError, match="rope scaling of type 'dynamic'"):
        check_gguf_support(SimpleNamespace(model_type="llama", rope_parameters={"rope_type": "dynamic"}))


def test_tokenizers_llama_cpp_would_split_differently_are_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from engine.export.gguf_vocab import check_tokenizer

    wp = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(ExportError, match="WordPiece"):
        check_tokenizer(PreTrainedTokenizerFast(tokenizer_object=wp))
    bpe = Tokenizer(models.BPE({"a": 0, "b": 1}, []))
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(pattern=" ", behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(use_regex=False)])
    with pytest.raises(ExportError, match="no implementation"):
        check_tokenizer(PreTrainedTokenizerFast(tokenizer_object=bpe))


# ---- types written by the gguf package -------------------------------------------------------

@pytest.mark.parametrize("qtype,rel_tol", [("bf16", 5e-3), ("q8_0", 1e-2), ("q5_1", 5e-2), ("q5_0", 6e-2),
                                           ("q4_1", 0.1), ("q4_0", 0.12)])
def test_gguf_package_types(qtype, rel_tol, arch_run, tmp_path):
    from gguf import GGUFReader

    run, _ = arch_run("llama")
    res = export_gguf(run, tmp_path / qtype, qtype, verify=False)
    path = tmp_path / qtype / res.details["gguf_file"]
    types = {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}
    assert types["blk.0.ffn_down.weight"] == qtype.upper() and types["blk.0.attn_norm.weight"] == "F32"
    if qtype.startswith("q4") or qtype.startswith("q5"):
        assert types["token_embd.weight"] == "Q8_0" and types["output.weight"] == "Q8_0"
    merged = merged_model(load_run(run), dtype="float32")[0].state_dict()
    back = _read_back(path).state_dict()
    for name, w in merged.items():
        err = (back[name] - w).norm() / w.norm()
        assert err < rel_tol, (name, float(err))


def test_k_quants_without_llama_cpp_explain_how_to_install(arch_run, tmp_path, monkeypatch):
    import engine.export.gguf_quant as gq

    monkeypatch.setattr(gq, "llama_cpp_available", lambda: False)
    run, _ = arch_run("llama")
    with pytest.raises(ExportError, match=r"pip install 'peft-studio\[llama\]'"):
        export_gguf(run, tmp_path / "k", "q4_k_m")
    assert not (tmp_path / "k").exists()
    from engine.export.formats import format_choices

    gguf = next(c for c in format_choices(run) if c.format.name == "gguf")
    q4km = next(o for o in gguf.options if o.value == "q4_k_m")
    assert not q4km.available and "peft-studio[llama]" in q4km.reason
    assert next(o for o in gguf.options if o.value == "q4_0").available


def test_transformers_check_explains_the_logit_difference(arch_run, tmp_path, monkeypatch):
    import engine.export.gguf_quant as gq

    monkeypatch.setattr(gq, "llama_cpp_available", lambda: False)
    run, _ = arch_run("llama")
    res = export_gguf(run, tmp_path / "g", "q8_0")
    a = res.details["agreement"]
    assert a["runtime"] == "transformers' GGUF reader" and a["prompts"] == 5
    assert 0 < a["max_abs_logit_diff"] < 2 and a["top1_agree"] >= 0.9 * a["positions"]
    assert "first choice leads its second by" in a["logits_sentence"]
    assert a["sentence"] in (tmp_path / "g" / "README.md").read_text()


# ---- llama.cpp itself ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TINY_ARCHS)
def test_llama_cpp_answers_like_the_merged_model(kind, arch_run, tmp_path):
    pytest.importorskip("llama_cpp")
    run, _ = arch_run(kind)
    res = export_gguf(run, tmp_path / "g", "f32")
    a = res.details["agreement"]
    assert a["runtime"] == "llama.cpp"
    assert a["identical"] == a["prompts"] == 5, a["sentence"]
    assert a["top1_agree"] == a["positions"] and a["max_abs_logit_diff"] < 1e-2
    assert "5 of 5 prompts" in a["sentence"] and "splits" not in a["sentence"]  # same tokenization too
    assert a["sentence"] in (tmp_path / "g" / "README.md").read_text()


@pytest.mark.parametrize("rope", [
    {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
], ids=["llama3", "linear"])
def test_llama_cpp_rope_scaling(rope, arch_run, tmp_path):
    """Llama 3's rope scaling travels as a rope_freqs tensor, linear scaling as metadata."""
    pytest.importorskip("llama_cpp")
    run, _ = arch_run("llama", rope_parameters=rope)
    a = export_gguf(run, tmp_path / "g", "f32").details["agreement"]
    assert a["identical"] == 5 and a["max_abs_logit_diff"] < 1e-2, a["sentence"]


def test_llama_cpp_k_quant(arch_run, tmp_path):
    pytest.importorskip("llama_cpp")
    from gguf import GGUFReader

    run, _ = arch_run("llama", hidden_size=256, intermediate_size=512)  # rows of whole 256-value blocks
    res = export_gguf(run, tmp_path / "k", "q4_k_m")
    path = tmp_path / "k" / res.details["gguf_file"]
    types = {t.tensor_type.name for t in GGUFReader(str(path)).tensors}
    assert "Q4_K" in types and "Q6_K" in types   # llama.cpp's Q4_K_M mix
    assert not list((tmp_path / "k").glob(".f16-*")), "the f16 intermediate is removed"
    a = res.details["agreement"]
    assert a["runtime"] == "llama.cpp" and a["label"] == "Q4_K_M" and a["positions"] > 0
    q8 = export_gguf(run, tmp_path / "q8", "q8_0", verify=False)
    assert res.details["size_bytes"] < q8.details["size_bytes"]
    from engine.export.formats import estimate_sizes

    est = next(e for e in estimate_sizes(run, formats=["gguf"]) if e.option == "q4_k_m")
    assert abs(est.bytes - res.details["size_bytes"]) < 0.03 * res.details["size_bytes"]  # llama.cpp's mix


@pytest.mark.parametrize("kind", ["llama", "qwen2", "phi3"])
def test_gguf_lora_adapter_on_the_base_equals_the_merged_gguf(kind, arch_run, tmp_path):
    pytest.importorskip("llama_cpp")
    from gguf import GGUFReader

    from engine.export.gguf_lora import export_gguf_lora
    from engine.export.llamacpp import LlamaCppModel

    run, _ = arch_run(kind)
    lora = export_gguf_lora(run, tmp_path / "lora", with_base="f32")
    fields = GGUFReader(str(tmp_path / "lora" / lora.details["gguf_file"])).fields
    assert fields["general.type"].contents() == "adapter" and fields["adapter.type"].contents() == "lora"
    assert "ADAPTER ./" in (tmp_path / "lora" / "Modelfile").read_text()
    merged = export_gguf(run, tmp_path / "merged", "f32", verify=False)
    tokenizer = merged_model(load_run(run), dtype="float32")[1]
    with_lora = LlamaCppModel(tmp_path / "lora" / lora.details["base_file"],
                              lora=tmp_path / "lora" / lora.details["gguf_file"])
    plain = LlamaCppModel(tmp_path / "merged" / merged.details["gguf_file"])
    base_only = LlamaCppModel(tmp_path / "lora" / lora.details["base_file"])
    try:
        changed = 0
        for prompt in ("What is two plus two?", "Translate to French: hello", "Once upon a time"):
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert with_lora.greedy(ids, 24) == plain.greedy(ids, 24)
            changed += base_only.greedy(ids, 24) != plain.greedy(ids, 24)
        assert changed, "the adapter must change the answers"
    finally:
        for m in (with_lora, plain, base_only):
            m.close()
    assert lora.details["agreement"]["identical"] == 5


def test_gguf_lora_refuses_what_llama_cpp_cannot_apply(tmp_path, tiny_model_dir):
    from engine.export.gguf_lora import export_gguf_lora

    dora = make_adapter_run(tmp_path / "dora", tiny_model_dir, "dora")
    with pytest.raises(ExportError, match="DoRA"):
        export_gguf_lora(dora, tmp_path / "out")
    ia3 = make_adapter_run(tmp_path / "ia3", tiny_model_dir, "ia3")
    with pytest.raises(ExportError, match="LoRA only"):
        export_gguf_lora(ia3, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- Ollama ----------------------------------------------------------------------------------

def _two_turns(system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": "What is two plus two?"},
                   {"role": "assistant", "content": "Four, matey."},
                   {"role": "user", "content": "And three plus three?"}]


@pytest.mark.parametrize("kind", ["llama", "smollm", "qwen2", "gemma2", "phi3", "mistral"])
def test_ollama_template_renders_like_the_chat_template(kind, tmp_path):
    from transformers import AutoTokenizer

    from engine.export.gotemplate import render
    from engine.export.ollama import _strip_bos, derive_template, ollama_messages

    tok = AutoTokenizer.from_pretrained(make_tiny_arch(kind, tmp_path / kind))
    derived = derive_template(tok)
    assert derived.source is not None, derived.reason
    systems = [None] if kind in ("gemma2", "mistral") else [None, "You are a pirate."]
    for system in systems:
        msgs = _two_turns(system)
        want = _strip_bos(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), tok)
        assert render(derived.source, ollama_messages(msgs)) == want


def test_modelfile_for_a_chatml_model(arch_run, tmp_path):
    run, base = arch_run("qwen2")
    cfg = load_run(run).config
    cfg.data.system_prompt = "You are a pirate."
    cfg.save(run / "run.yaml")
    gc = {"eos_token_id": [2, 0], "do_sample": True, "temperature": 0.7, "top_p": 0.8}
    (base / "generation_config.json").write_text(json.dumps(gc))  # Qwen2.5-style: EOS list + sampling
    res = export_gguf(run, tmp_path / "g", "f16", verify=False)
    text = (tmp_path / "g" / "Modelfile").read_text()
    assert f"FROM ./{res.details['gguf_file']}" in text
    stops = [line.split(" ", 2)[2] for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops == ['"<|im_end|>"', '"<|endoftext|>"']
    assert "PARAMETER temperature 0.7" in text and "PARAMETER top_p 0.8" in text
    assert 'SYSTEM """You are a pirate."""' in text
    assert "TEMPLATE" in text and res.details["ollama_template"]
    assert res.details["ollama_command"].startswith("ollama create run -f ")


def test_go_template_subset():
    from engine.export.gotemplate import TemplateError, render

    data = {"System": "sys", "Messages": [{"Role": "user", "Content": "a"}, {"Role": "assistant", "Content": "b"},
                                          {"Role": "user", "Content": "c"}]}
    src = ("{{- if .System }}[S:{{ .System }}]\n{{ end }}\n{{- range $i, $_ := .Messages }}\n"
           "{{- $last := eq (len (slice $.Messages $i)) 1 -}}\n"
           "{{ if eq .Role \"user\" }}U({{ .Content }}){{ else if eq .Role \"assistant\" }}A({{ .Content }})"
           "{{ else }}?{{ end }}{{ if and $last (ne .Role \"assistant\") }}>{{ end }}\n{{- end }}")
    assert render(src, data) == "[S:sys]\nU(a)A(b)U(c)>"
    assert render("{{ if not .X }}none{{ end }}{{ index .L 1 }}{{ len .L }}", {"X": "", "L": [5, 6]}) == "none62"
    with pytest.raises(TemplateError):
        render("{{ with .System }}x{{ end }}", data)
    with pytest.raises(TemplateError):
        render("{{ if .System }}x", data)


# ---- sizes, registry, checkpoints -------------------------------------------------------------

def test_sizes_before_export_match_the_files(arch_run, tmp_path, capsys):
    from engine.cli import main
    from engine.export.formats import estimate_sizes

    run, _ = arch_run("llama")
    sizes = {(e.format, e.option): e for e in estimate_sizes(run)}
    for qtype in ("f16", "q8_0", "q4_0"):
        res = export_gguf(run, tmp_path / qtype, qtype, verify=False)
        est = sizes[("gguf", qtype)]
        assert est.exact and abs(est.bytes - res.details["size_bytes"]) < 0.02 * res.details["size_bytes"]
    assert sizes[("gguf", "q4_k_m")].bytes < sizes[("gguf", "q8_0")].bytes < sizes[("gguf", "f16")].bytes
    assert not sizes[("gguf", "q4_k_m")].exact
    assert sizes[("gguf-lora", "f32")].bytes == 2 * sizes[("gguf-lora", "f16")].bytes
    assert sizes[("merged", "float32")].bytes == 2 * sizes[("merged", "bfloat16")].bytes
    assert main(["export", str(run), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "q4_k_m" in out and "gguf-lora" in out and "merged" in out and "KB" in out
    assert not (run / "exports").exists(), "a dry run writes nothing"


def test_registry_says_what_each_run_can_export(make_prompt_run):
    from engine.export.formats import FORMATS, format_choices, register

    assert list(FORMATS) == ["adapter", "merged", "gguf", "ollama", "gguf-lora"]
    choices = {c.format.name: c for c in format_choices(make_prompt_run)}
    assert choices["adapter"].available
    assert not choices["gguf"].available and "cannot be merged" in choices["gguf"].reason
    assert not choices["gguf-lora"].available and "LoRA only" in choices["gguf-lora"].reason
    with pytest.raises(ValueError, match="twice"):
        register(FORMATS["gguf"])


@pytest.fixture
def make_prompt_run(tmp_path, tiny_model_dir):
    return make_adapter_run(tmp_path / "pt", tiny_model_dir, "prompt_tuning")


def test_checkpoint_choice_base_best_and_checkpoints(tmp_path, tiny_model_dir, capsys):
    import shutil

    from transformers import AutoModelForCausalLM

    from engine.cli import main

    run = make_adapter_run(tmp_path / "run", tiny_model_dir, "lora", checkpoints=(2, 4))
    info = load_run(run)
    assert info.choices() == ["final", "checkpoint-4", "checkpoint-2", "base"]
    shutil.copytree(run / "checkpoints" / "checkpoint-2", run / "best")
    info = load_run(run)
    assert info.choices()[:2] == ["final", "best"] and info.adapter("best") == run / "best"

    def top1(gguf_dir):
        path = next(gguf_dir.glob("*.gguf"))
        with torch.no_grad():
            return _read_back(path)(torch.tensor([[1, 5, 9, 14, 20]])).logits

    assert main(["export", str(run), "--gguf", "f32", "--checkpoint", "base", "--no-verify",
                 "--out", str(tmp_path / "b")]) == 0
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        want = base(torch.tensor([[1, 5, 9, 14, 20]])).logits
    assert (top1(tmp_path / "b") - want).abs().max() < 1e-4
    assert "base model itself" in (tmp_path / "b" / "README.md").read_text()
    assert main(["export", str(run), "--gguf", "f32", "--checkpoint", "best", "--no-verify",
                 "--out", str(tmp_path / "best")]) == 0
    assert main(["export", str(run), "--gguf", "f32", "--checkpoint", "checkpoint-2", "--no-verify",
                 "--out", str(tmp_path / "c2")]) == 0
    assert torch.equal(top1(tmp_path / "best"), top1(tmp_path / "c2"))
    assert main(["export", str(run), "--gguf", "f32", "--checkpoint", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "base" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_modelfile_stops_on_im_end():
    """The demo model (SmolLM2-135M-Instruct): ChatML, <|im_end|> ends a turn and is its EOS."""
    import os

    if not os.environ.get("PEFT_STUDIO_SLOW"):
        pytest.skip("set PEFT_STUDIO_SLOW=1: loads the demo model")
    from engine.export.ollama import build_modelfile
    from engine.models import load_tokenizer

    tok = load_tokenizer("demo")
    mf = build_modelfile("demo.q4_k_m.gguf", tok)
    assert mf.stops == ["<|im_end|>"] and mf.template.source is not None


def test_cli_ollama_and_gguf_lora(arch_run, tmp_path, capsys):
    from engine.cli import main

    run, _ = arch_run("smollm")
    assert main(["export", str(run), "--ollama", "q8_0", "--no-verify", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "ollama create run -f" in out
    modelfile = (tmp_path / "o" / "Modelfile").read_text()
    assert "You are a helpful AI assistant named SmolLM" in modelfile  # the template's default system prompt
    assert main(["export", str(run), "--gguf-lora", "--out", str(tmp_path / "l")]) == 0
    assert "GGUF LoRA adapter written" in capsys.readouterr().out
    assert list((tmp_path / "l").glob("*.lora.f32.gguf"))
