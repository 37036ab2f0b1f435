"""Each method's own run-file fields, as typed dataclasses (no torch/peft import here).

The method registry (``engine.methods``) pairs each of these with the code that builds the
method. Keeping the parameters apart lets the run file, the CLI and the studio's forms work
before the ML stack has been imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import ConfigError, F, MethodConfig

PARAMS: dict[str, type[MethodConfig]] = {}


def register_params(name: str):
    """Class decorator: register a method's parameter dataclass under ``name`` (no duplicates).

    The class must declare ``name: str = F("<name>", ...)`` itself so that its default is right.
    """

    def deco(klass):
        if name in PARAMS:
            raise ValueError(f"method {name!r} is registered twice")
        if klass().name != name:
            raise ValueError(f"{klass.__name__}.name defaults to {klass().name!r}, expected {name!r}")
        PARAMS[name] = klass
        return klass

    return deco


def _name(n: str):
    return F(n, "The fine-tuning method.")


TARGET_HELP = ("Which linear layers get adapters: `auto` (attention + MLP projections detected for the "
               "architecture), `all-linear`, or a list of module names such as [q_proj, v_proj].")


@dataclass
class _LoraFields(MethodConfig):
    r: int = F(16, "Rank of the low-rank update. Higher learns more, costs more memory.", minimum=1,
               maximum=4096)
    alpha: float = F(32, "Scaling: the update is multiplied by alpha / r (alpha / √r with rsLoRA).",
                     minimum=0.0)
    dropout: float = F(0.05, "Dropout on the adapter's input during training.", minimum=0.0, maximum=0.9)
    target_modules: list | str = F("auto", TARGET_HELP)
    use_rslora: bool = F(False, "Rank-stabilised LoRA: scale by alpha/√r, which keeps high ranks stable.",
                         advanced=True)
    bias: str = F("none", "Also train biases: none, all, or lora_only.", choices=["none", "all", "lora_only"],
                  advanced=True)
    init: str = F("default", "Initialisation of the adapter weights: default (B = 0), gaussian, pissa "
                  "(principal singular vectors), olora.", choices=["default", "gaussian", "pissa", "olora"],
                  advanced=True)
    modules_to_save: list = F(default_factory=list, help="Extra modules trained in full and saved with "
                              "the adapter, e.g. [lm_head, embed_tokens].", advanced=True)


@register_params("lora")
@dataclass
class LoraParams(_LoraFields):
    """LoRA: a trainable low-rank update B·A beside each frozen linear layer."""

    name: str = _name("lora")


@register_params("qlora")
@dataclass
class QLoraParams(_LoraFields):
    """QLoRA: LoRA on a 4-bit NF4-quantized frozen base (bitsandbytes)."""

    name: str = _name("qlora")


@register_params("dora")
@dataclass
class DoraParams(_LoraFields):
    """DoRA: LoRA with the weight decomposed into magnitude and direction."""

    name: str = _name("dora")


@register_params("ia3")
@dataclass
class IA3Params(MethodConfig):
    """IA³: learned vectors that rescale keys, values and the MLP's activations."""

    name: str = _name("ia3")

    target_modules: list | str = F("auto", "Modules whose activations are rescaled: `auto` (k, v and the "
                                   "MLP down projection for the architecture) or a list of names.")
    feedforward_modules: list | str = F("auto", "Which of target_modules are MLP layers (their input is "
                                        "scaled, not their output). `auto` detects them.", advanced=True)


@dataclass
class _PromptFields(MethodConfig):
    num_virtual_tokens: int = F(20, "Number of learned virtual tokens prepended to every sequence.",
                                minimum=1, maximum=1024)


@register_params("prompt_tuning")
@dataclass
class PromptTuningParams(_PromptFields):
    """Prompt tuning: learned soft-prompt embeddings prepended to the input."""

    name: str = _name("prompt_tuning")

    init: str = F("text", "Initialise the soft prompt from the embeddings of `init_text`, or randomly.",
                  choices=["text", "random"])
    init_text: str = F("Answer the question in the style of the examples.",
                       "Text whose token embeddings initialise the soft prompt (when init is text).")


@register_params("p_tuning")
@dataclass
class PTuningParams(_PromptFields):
    """P-tuning: virtual tokens produced by a small trainable prompt encoder (MLP or LSTM)."""

    name: str = _name("p_tuning")

    encoder_type: str = F("MLP", "The prompt encoder.", choices=["MLP", "LSTM"])
    encoder_hidden_size: int = F(128, "Hidden size of the prompt encoder.", minimum=1)


@register_params("prefix_tuning")
@dataclass
class PrefixTuningParams(_PromptFields):
    """Prefix tuning: learned key/value prefixes in every attention layer."""

    name: str = _name("prefix_tuning")

    prefix_projection: bool = F(False, "Produce the prefixes through a two-layer MLP (reparameterisation).")
    encoder_hidden_size: int = F(256, "Hidden size of that MLP.", minimum=1, advanced=True)


LORA_FAMILY = {"lora", "qlora", "dora"}
PROMPT_FAMILY = {"prompt_tuning", "p_tuning", "prefix_tuning"}


def validate_method_params(cfg) -> None:
    """Cross-field checks that need no weights and no ML imports."""
    m = cfg.method
    name = m.name
    if name == "qlora" and cfg.model.quantization not in (None, "nf4", "fp4"):
        raise ConfigError("model.quantization", "qlora trains on a 4-bit base; use nf4 or fp4 (or leave "
                          "it empty for nf4)", cfg.model.quantization, choices=["nf4", "fp4"])
    tm = getattr(m, "target_modules", None)
    if tm is not None:
        if isinstance(tm, str) and tm not in ("auto", "all-linear"):
            raise ConfigError("method.target_modules", "must be auto, all-linear or a list of module names",
                              tm)
        if isinstance(tm, list) and not tm:
            raise ConfigError("method.target_modules", "the list is empty; name at least one module or use "
                              "auto", tm)
    if cfg.train.loraplus_lr_ratio and name not in LORA_FAMILY:
        raise ConfigError("train.loraplus_lr_ratio", f"LoRA+ only applies to LoRA-family methods, not {name}",
                          cfg.train.loraplus_lr_ratio)
    if name in ("p_tuning", "prefix_tuning", "prompt_tuning") and cfg.model.quantization:
        # peft supports it in principle, but the soft prompt then trains against a dequantized
        # embedding each step; we keep the supported matrix honest rather than guess.
        pass
    if name == "prompt_tuning" and m.init == "text" and not m.init_text.strip():
        raise ConfigError("method.init_text", "is empty; give a text or set method.init to random")


# The methods beyond issue 2 (bottleneck, BitFit, selective, full, the rest of peft).
from engine.methods import params_more  # noqa: E402,F401
