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


# ---- tiny models of every architecture the GGUF writer handles ---------------------------------

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}")
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + "
    "'<|end|>\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
# SmolLM2's template: ChatML with a default system prompt when the conversation has none.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_spm_tokenizer(special: tuple[str, ...] = (), chat_template: str | None = None, bos: str = "<s>",
                       eos: str = "</s>", add_bos: bool = True, space_prefix: bool = True):
    """A SentencePiece BPE tokenizer with byte fallback (Llama 2 / Mistral / Gemma style), trained
    offline with ``sentencepiece`` and turned into the tokenizer.json form transformers uses:
    BPE + byte_fallback, merges ordered by piece score (as transformers' converter orders them),
    and the normalizer of the hub's files: ``Prepend("▁")`` + ``Replace(" ", "▁")`` for Llama 2 /
    Mistral / Phi-3 (``space_prefix``), ``Replace`` only for Gemma. Built by hand because
    transformers' own converter needs protobuf."""
    import io

    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    from engine.testing import _CORPUS

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(_CORPUS * 4), model_writer=buf, vocab_size=480,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0,
                                   bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece=bos, eos_piece=eos,
                                   split_digits=True, minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    merges = []
    for piece, pid in vocab.items():
        if sp.is_control(pid) or sp.is_byte(pid) or sp.is_unknown(pid) or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                merges.append((scores[piece], vocab[a], vocab[b], a, b))
    merges.sort(key=lambda m: (-m[0], m[1], m[2]))
    tok = Tokenizer(models.BPE(vocab, [(m[3], m[4]) for m in merges], unk_token="<unk>", byte_fallback=True,
                               fuse_unk=True))
    replace = normalizers.Replace(" ", "\u2581")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if space_prefix else replace
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tok.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if space_prefix else []))
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token="<unk>",
                                   pad_token="<unk>")
    if special:
        fast.add_special_tokens({"additional_special_tokens": list(special)})
    if chat_template:
        fast.chat_template = chat_template
    return fast


def _save(model_cls, cfg, tok, out_dir, seed: int) -> Path:
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = model_cls(cfg)
    with torch.no_grad():  # random norms: a norm of ones would hide a missing Gemma +1 or a mislabelled norm
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn(p.shape) * 0.1)
            elif name.endswith(".bias"):
                p.normal_(0, 0.05)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _common(tok, overrides: dict, **extra) -> dict:
    # initializer_range 0.2 (not 0.02): a random model with sharper preferences, so that a
    # rounding to f16 does not flip its many near-ties between first and second choice.
    out = dict(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512, initializer_range=0.2,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out.update(extra)
    out.update(overrides)
    return out


def make_tiny_arch(kind: str, out_dir, seed: int = 0, **overrides) -> Path:
    """A tiny model of architecture ``kind`` with a fitting tokenizer and chat template:

    * ``llama``: byte-level BPE, ChatML, untied (q/k permuted for llama.cpp);
    * ``qwen2``: byte-level BPE, ChatML, q/k/v biases, tied embeddings (like Qwen2.5-0.5B);
    * ``qwen3``: head_dim 32 (≠ hidden/heads), q/k norms, untied;
    * ``smollm``: Llama with SmolLM2's template (a default system prompt), tied;
    * ``mistral``: SentencePiece tokenizer, [INST] template, Llama layout (q/k permuted);
    * ``gemma2``: SentencePiece, Gemma's template, head_dim 256, soft-capping, sliding window;
    * ``gemma3``: Gemma 3 text model, per-layer rope bases, q/k norms;
    * ``phi3``: SentencePiece, Phi-3's template, fused qkv_proj and gate_up_proj.
    """
    from transformers import (
        Gemma2Config,
        Gemma2ForCausalLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Phi3Config,
        Phi3ForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    from engine.testing import make_tokenizer

    # ``overrides``: config fields, e.g. hidden_size=256 for rows that hold whole K-quant blocks.
    if kind == "qwen2":
        tok = make_tokenizer()
        return _save(Qwen2ForCausalLM, Qwen2Config(**_common(tok, overrides, tie_word_embeddings=True)), tok, out_dir, seed)
    if kind == "qwen3":
        tok = make_tokenizer()
        return _save(Qwen3ForCausalLM, Qwen3Config(**_common(tok, overrides, head_dim=128, tie_word_embeddings=False)), tok,
                     out_dir, seed)
    if kind == "llama":
        tok = make_tokenizer()
        return _save(LlamaForCausalLM, LlamaConfig(**_common(tok, overrides, tie_word_embeddings=False)), tok, out_dir, seed)
    if kind == "smollm":
        tok = make_tokenizer(chat_template=SMOLLM2_TEMPLATE)
        return _save(LlamaForCausalLM, LlamaConfig(**_common(tok, overrides, tie_word_embeddings=True)), tok, out_dir, seed)
    if kind == "mistral":
        tok = make_spm_tokenizer(chat_template=MISTRAL_TEMPLATE)
        return _save(MistralForCausalLM, MistralConfig(**_common(tok, overrides, sliding_window=None, tie_word_embeddings=False)),
                     tok, out_dir, seed)
    if kind == "gemma2":
        tok = make_spm_tokenizer(("<start_of_turn>", "<end_of_turn>"), GEMMA_TEMPLATE, bos="<bos>", eos="<eos>",
                                 space_prefix=False)
        cfg = Gemma2Config(**_common(tok, overrides, num_attention_heads=2, num_key_value_heads=1, head_dim=256,
                                     query_pre_attn_scalar=256, tie_word_embeddings=True))
        return _save(Gemma2ForCausalLM, cfg, tok, out_dir, seed)
    if kind == "gemma3":
        tok = make_spm_tokenizer(("<start_of_turn>", "<end_of_turn>"), GEMMA_TEMPLATE, bos="<bos>", eos="<eos>",
                                 space_prefix=False)
        cfg = Gemma3TextConfig(**_common(tok, overrides, num_attention_heads=2, num_key_value_heads=1, head_dim=256,
                                         query_pre_attn_scalar=256, tie_word_embeddings=True,
                                         layer_types=["sliding_attention", "full_attention"]))
        return _save(Gemma3ForCausalLM, cfg, tok, out_dir, seed)
    if kind == "phi3":
        tok = make_spm_tokenizer(("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"),
                                 PHI3_TEMPLATE, add_bos=False)
        tok.eos_token = "<|endoftext|>"
        cfg = Phi3Config(**_common(tok, overrides, original_max_position_embeddings=512, sliding_window=None,
                                   tie_word_embeddings=False))
        return _save(Phi3ForCausalLM, cfg, tok, out_dir, seed)
    raise ValueError(f"unknown tiny architecture {kind!r}")


TINY_ARCHS = ("llama", "qwen2", "qwen3", "smollm", "mistral", "gemma2", "gemma3", "phi3")
