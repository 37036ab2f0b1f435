"""A LoRA adapter as a llama.cpp GGUF adapter: applied to the base GGUF at load time, no merge.

llama.cpp's adapter format (what its ``convert_lora_to_gguf.py`` writes and ``llama-adapter.cpp``
reads): ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each
adapted weight ``<gguf tensor name>.lora_a`` (r × in) and ``.lora_b`` (out × r), under the base
architecture's tensor names. llama.cpp scales each pair by ``alpha / r`` (r read off the tensor);
peft scales by ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA, per-module with rank/alpha
patterns), so any difference is folded into ``lora_b`` and the result is exactly peft's update.
The Llama-layout q/k permutation is applied to ``lora_b``'s rows, as to the base weights.

    llama-cli -m base.f16.gguf --lora run.lora.gguf      # llama.cpp
    FROM ./base.f16.gguf / ADAPTER ./run.lora.gguf       # Ollama Modelfile
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from engine.export.atomic import ExportError, atomic_dir
from engine.export.result import ExportResult, Progress, no_progress
from engine.export.runinfo import RunInfo, load_run

LORA_TYPES = ("f32", "f16")


def _pattern_value(pattern: dict, module: str, default):
    """peft's rank_pattern / alpha_pattern lookup: the first key matching the module name's end."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def check_lora(adapter_config: dict, where: Path) -> None:
    """Refuse adapters llama.cpp's LoRA format cannot carry, naming the reason."""
    peft_type = adapter_config.get("peft_type")
    if peft_type != "LORA":
        raise ExportError(f"{where}: a GGUF LoRA adapter holds LoRA only; this adapter is {peft_type or 'not peft'}. "
                          "Export a merged GGUF instead.")
    if adapter_config.get("use_dora"):
        raise ExportError(f"{where}: DoRA's magnitude vectors have no place in llama.cpp's LoRA format; export a "
                          "merged GGUF instead.")
    if (adapter_config.get("bias") or "none") != "none":
        raise ExportError(f"{where}: the adapter trains biases (bias={adapter_config['bias']!r}), which llama.cpp's "
                          "LoRA format cannot hold; export a merged GGUF instead.")
    if adapter_config.get("modules_to_save"):
        raise ExportError(f"{where}: modules_to_save ({', '.join(adapter_config['modules_to_save'])}) are whole "
                          "trained copies, not LoRA pairs; export a merged GGUF instead.")


def lora_tensors(adapter_dir: Path, cfg, adapter_config: dict):
    """[(gguf name, numpy array)] for every lora_a / lora_b, and the alpha to write."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    from engine.export.gguf_arch import arch_for
    from engine.export.to_gguf import _permute

    arch = arch_for(cfg)
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.arch), cfg.num_hidden_layers)
    path = adapter_dir / "adapter_model.safetensors"
    if not path.exists():
        raise ExportError(f"{adapter_dir} has no adapter_model.safetensors.")
    state = {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    r0 = int(adapter_config.get("r") or 8)
    alpha0 = float(adapter_config.get("lora_alpha") or r0)
    rslora = bool(adapter_config.get("use_rslora"))
    alpha_written = alpha0 * math.sqrt(r0) if rslora else alpha0
    tied = bool(getattr(cfg, "tie_word_embeddings", False)) or arch.always_tied
    out = []
    for key in sorted(k for k in state if k.endswith(".lora_A.weight")):
        module = key[: -len(".lora_A.weight")]
        b_key = module + ".lora_B.weight"
        if b_key not in state:
            raise ExportError(f"{adapter_dir}: {key} has no matching lora_B.")
        hf_name = re.sub(r"^base_model\.model\.", "", module) + ".weight"
        if hf_name == "lm_head.weight" and tied:
            raise ExportError("The adapter changes lm_head, which this model shares with its embeddings; llama.cpp's "
                              "LoRA format cannot hold that. Export a merged GGUF instead.")
        gname = name_map.get_name(hf_name, try_suffixes=(".weight",))
        if gname is None:
            raise ExportError(f"{adapter_dir}: no GGUF tensor for {hf_name}; llama.cpp cannot apply this adapter.")
        a, b = state[key], state[b_key]
        r = a.shape[0]
        short = re.sub(r"^base_model\.model\.", "", module)
        rank = int(_pattern_value(adapter_config.get("rank_pattern"), short, r0))
        alpha = float(_pattern_value(adapter_config.get("alpha_pattern"), short, alpha0))
        scaling = alpha / math.sqrt(rank) if rslora else alpha / rank
        factor = scaling * r / alpha_written          # llama.cpp multiplies by alpha_written / r
        if abs(factor - 1.0) > 1e-7:
            b = b * np.float32(factor)
        if arch.permute_qk and ".self_attn.q_proj" in hf_name:
            b = _permute(b, cfg.num_attention_heads)
        elif arch.permute_qk and ".self_attn.k_proj" in hf_name:
            b = _permute(b, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
        out.append((gname + ".lora_a", np.ascontiguousarray(a)))
        out.append((gname + ".lora_b", np.ascontiguousarray(b)))
    extra = [k for k in state if not (k.endswith(".lora_A.weight") or k.endswith(".lora_B.weight"))]
    if extra:
        raise ExportError(f"{adapter_dir}: tensors other than LoRA pairs ({', '.join(extra[:3])}…) cannot go into "
                          "llama.cpp's LoRA format; export a merged GGUF instead.")
    if not out:
        raise ExportError(f"{adapter_dir}: no LoRA tensors found.")
    return out, alpha_written


def write_gguf_lora(adapter_dir: Path, cfg, path: Path, dtype: str = "f32", name: str | None = None) -> Path:
    """Write the adapter in ``adapter_dir`` (peft LoRA) for a base with config ``cfg`` to ``path``."""
    import gguf
    import numpy as np

    from engine.export.gguf_arch import arch_for
    from engine.export.loading import read_adapter_config

    if dtype not in LORA_TYPES:
        raise ExportError(f"GGUF LoRA adapters are written as {' or '.join(LORA_TYPES)}, not {dtype!r}.")
    ac = read_adapter_config(adapter_dir)
    check_lora(ac, adapter_dir)
    arch = arch_for(cfg)
    tensors, alpha = lora_tensors(adapter_dir, cfg, ac)
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch.arch)])
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        if name:
            writer.add_name(name)
        for tname, arr in tensors:
            writer.add_tensor(tname, arr.astype(np.float16) if dtype == "f16" else arr)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def export_gguf_lora(run: str | Path | RunInfo, out: str | Path, which: str | None = None, dtype: str = "f32",
                     with_base: str | None = None, verify: bool = True, overwrite: bool = False,
                     progress: Progress = no_progress) -> ExportResult:
    """``out/<run>.lora.<dtype>.gguf``; with ``with_base`` (a GGUF type) also the base model as a
    GGUF, an Ollama Modelfile (FROM base + ADAPTER) and, with llama.cpp installed, a check that
    base + adapter answers like the merged model."""
    from engine.export.gguf_export import gguf_filename, preflight, tokenizer_pre_override, verify_file
    from engine.export.loading import read_adapter_config
    from engine.export.merge import merged_model
    from engine.export.to_gguf import write_gguf
    from engine.models import ModelError, resolve_model_config

    info = run if isinstance(run, RunInfo) else load_run(run)
    src = info.adapter(which)
    check_lora(read_adapter_config(src) if (src / "adapter_config.json").exists() else {}, src)
    try:
        cfg = resolve_model_config(info.config.model.name_or_path, info.config.model.trust_remote_code,
                                   info.config.model.offline)
    except ModelError as e:
        raise ExportError(str(e)) from None
    q = preflight(info, with_base, "base") if with_base else None
    from engine.export.gguf_arch import check_architecture

    check_architecture(cfg)
    out = Path(out).expanduser()
    stem = gguf_filename(info, "lora." + dtype).removesuffix(".gguf")
    fname = stem + ".gguf"
    details: dict = {"gguf_file": fname, "gguf_type": dtype.upper(), "source": str(src)}
    with atomic_dir(out, overwrite) as tmp:
        progress("Writing the GGUF LoRA adapter", None, None)
        write_gguf_lora(src, cfg, tmp / fname, dtype, name=info.name)
        if q is not None:
            base, tokenizer, _, _ = merged_model(info, "base", "float32", progress)
            base_file = gguf_filename(info, q.name, "base")
            pre = tokenizer_pre_override(info)
            if q.needs_llama_cpp:
                from engine.export.llamacpp import quantize

                f16 = tmp / (".f16-" + base_file)
                write_gguf(base, tokenizer, f16, "f16", name=info.name + "-base", tokenizer_pre=pre, progress=progress)
                quantize(f16, tmp / base_file, q.llama_ftype)
                f16.unlink()
            else:
                write_gguf(base, tokenizer, tmp / base_file, q.name, name=info.name + "-base", tokenizer_pre=pre,
                           progress=progress)
            del base
            details["base_file"] = base_file
            from engine.export.ollama import build_modelfile, ollama_model_name

            merged, tokenizer, _, _ = merged_model(info, which, "float32", progress)
            system = info.config.data.system_prompt if not info.is_bare_adapter else None
            mf = build_modelfile(base_file, tokenizer, getattr(merged, "generation_config", None), system,
                                 getattr(cfg, "max_position_embeddings", None), adapter_file=fname)
            (tmp / "Modelfile").write_text(mf.text, encoding="utf-8")
            details["ollama_command"] = mf.create_command(ollama_model_name(info.name), out)
            from engine.export.gguf_quant import llama_cpp_available

            if verify and llama_cpp_available():
                agreement = verify_file(merged, tokenizer, tmp / base_file, f"{q.title} base + LoRA", system,
                                        lora=tmp / fname, progress=progress)
                details["agreement"] = agreement.as_dict()
        (tmp / "README.md").write_text(_card(info, fname, details), encoding="utf-8")
    return ExportResult("gguf-lora", out.absolute(), details=details)


def _card(info: RunInfo, fname: str, details: dict) -> str:
    from engine.modelcard import base_model_label

    base = details.get("base_file") or "<the base model as GGUF>.gguf"
    lines = [f"# {info.name}: LoRA adapter for llama.cpp (GGUF)", "",
             f"A {info.method.title} adapter for **{base_model_label(info.config.model.name_or_path)}** in "
             "llama.cpp's adapter format, applied to the base model's GGUF at load time (no merge).", "",
             "```sh", f"llama-cli -m {base} --lora {fname} -cnv", "```", ""]
    if details.get("ollama_command"):
        lines += ["With Ollama (the Modelfile names the base and the adapter):", "", "```sh",
                  details["ollama_command"], "```", ""]
    if details.get("agreement"):
        a = details["agreement"]
        lines += [f"Checked in llama.cpp: {a['sentence']} {a['logits_sentence']}", ""]
    return "\n".join(lines)
