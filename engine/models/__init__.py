"""Base models: where they come from, loading them, what they are made of, their architecture.

Below ``engine.methods`` (methods read models, never the other way round). Importing this
package is cheap: torch and transformers load inside the functions.

* ``source`` — ``resolve_source`` (demo, folder, .gguf, hub id), ``resolve_model_config``,
  ``demo_model_dir``, ``list_cached_models``;
* ``loading`` — ``load_model``, ``load_tokenizer`` (padding-ready), ``load_base_tokenizer`` and
  ``BaseTokenizer`` (the base's own, to save), ``resolve_dtype``, ``check_bitsandbytes``;
* ``introspect`` — ``count_parameters``, ``linear_module_names``, ``unique_params``;
* ``arch`` — the sizes the estimator needs, read from config.json alone (``load_arch``);
* ``quant`` — bitsandbytes storage sizes and stand-in quantized layers;
* ``attention`` — the ``sdpa_varlen`` kernel for packed rows.
"""

from engine.errors import ModelError
from engine.models.introspect import (
    LINEAR_SKIP,
    count_parameters,
    linear_module_names,
    real_numel,
    unique_params,
)
from engine.models.loading import (
    TOKENIZER_FILES,
    BaseTokenizer,
    check_bitsandbytes,
    ensure_pad_token,
    load_base_tokenizer,
    load_model,
    load_tokenizer,
    pad_choice,
    quantization_config,
    resolve_dtype,
)
from engine.models.source import (
    DEMO_NAME,
    WEIGHT_FILES,
    ModelSource,
    demo_model_dir,
    has_weights,
    hf_cache_root,
    list_cached_models,
    resolve_model_config,
    resolve_source,
)

__all__ = [
    "TOKENIZER_FILES", "BaseTokenizer", "load_base_tokenizer", "pad_choice", "real_numel",
    "DEMO_NAME", "LINEAR_SKIP", "WEIGHT_FILES", "ModelError", "ModelSource", "check_bitsandbytes",
    "count_parameters", "demo_model_dir", "ensure_pad_token", "has_weights", "hf_cache_root",
    "linear_module_names", "list_cached_models", "load_model", "load_tokenizer", "quantization_config",
    "resolve_dtype", "resolve_model_config", "resolve_source", "unique_params",
]
