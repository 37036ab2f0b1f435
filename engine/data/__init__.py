"""The data layer: read a data set, detect its format, render it with the chat template,
tokenize it with label masks, and batch it (padded or packed).

Public API (the studio and the trainer code against these names):

* ``DataError`` – a plain-language error naming the file, line/record and field.
* ``load_records(data_cfg, base_dir=None) -> LoadedData`` – files → internal records.
* ``prepare_data(data_cfg, tokenizer, seed=42, reporter=None, base_dir=None,
  extra_prompt_tokens=0) -> PreparedData`` – records → input_ids + labels.
* ``make_collator(tokenizer, packing, max_length)`` and ``pack_examples(examples, max_length)``.
* ``heldout_prompts(data_cfg, n, seed, base_dir)`` – the first held-out records as prompts with
  their reference answers (sample generations at every evaluation).
* ``render_segments(record, tokenizer, data_cfg)`` and ``token_lengths(records, tokenizer,
  data_cfg)`` – for the GUI's preview and length histogram.

Importing this package is cheap: torch, transformers and datasets load inside the functions.
"""

from engine.data.collate import PACKED_FORWARD_KWARGS, block_causal_mask, make_collator, pack_examples
from engine.data.errors import DataError
from engine.data.formats import FORMATS
from engine.data.heldout import conversation_of, heldout_prompts
from engine.data.pipeline import (
    IGNORE_INDEX,
    LoadedData,
    PreparedData,
    load_records,
    prepare_data,
    render_segments,
    split_records,
    token_lengths,
)
from engine.data.render import chat_template_for

__all__ = [
    "DataError", "FORMATS", "IGNORE_INDEX", "LoadedData", "PreparedData", "PACKED_FORWARD_KWARGS",
    "block_causal_mask", "chat_template_for", "conversation_of", "heldout_prompts", "load_records", "make_collator", "pack_examples",
    "prepare_data", "render_segments", "split_records", "token_lengths",
]
