"""The data layer: read → normalise → render → tokenize → pack, on ``datasets`` (Arrow, map, cache).

Public API (the studio and the trainer code against these names):

* ``DataError`` – a plain-language error naming the file, line/record and field.
* ``prepare_data(data_cfg, tokenizer, seed=42, reporter=None, base_dir=None,
  extra_prompt_tokens=0) -> PreparedData`` – files → tokenized examples (``Examples``: sequences
  over memory-mapped Arrow rows), cached; ``.report`` is the data report.
* ``data_report(data_cfg, tokenizer, ...) -> DataReport`` – the same, for the report alone.
* ``preview(data_cfg, tokenizer, n=20) -> Preview`` – the first ``n`` records of a file of any size,
  rendered with their trained segments, reading no further than needed.
* ``iter_statistics(data_cfg, tokenizer, every=2000, cancel=None)`` – partial statistics
  (histogram, counts, problems by line) while reading, for a progressive display.
* ``detect_preference(columns, rows) -> PreferenceShape | None`` and ``preference_record(row,
  shape)`` – preference data shapes and TRL's conversational form of a row; ``task_for_data(kinds)``
  – the train.task that sources of those kinds (paired, unpaired, sft) serve.
* ``prepare_preference_data(data_cfg, expect, tokenizer=None, ...) -> PreferenceData`` – preference
  data (train.task dpo, orpo, kto, simpo; data.path or the mix of data.sources) as TRL's columns,
  with its ``PreferenceReport`` (pairs, identical answers, length balance, sources, held-out rows).
* ``load_records(data_cfg, base_dir=None) -> LoadedData`` – files → internal records as Python
  lists (small data only).
* ``source_specs(data_cfg)`` – the sources a run reads (data.path or each of data.sources) with their
  own format and columns; ``read_table(path)`` – a small file's rows and columns (tests, pickers).
* ``make_collator(tokenizer, packing, max_length)`` and ``pack_examples(examples, max_length)``.
* ``heldout_prompts(data_cfg, n, seed, base_dir)`` – the first held-out records as prompts with
  their reference answers (sample generations at every evaluation).
* ``render_segments(record, tokenizer, data_cfg)`` and ``token_lengths(records, tokenizer,
  data_cfg)`` – for the GUI's preview and length histogram.
* ``cache`` – the data cache (``entries()``, ``clear()``, ``cache_root()``).

Importing this package is cheap: torch, transformers and datasets load inside the functions.
"""

from engine.data.collate import PACKED_FORWARD_KWARGS, block_causal_mask, make_collator, pack_examples
from engine.data.errors import DataError
from engine.data.examples import Examples
from engine.data.formats import FORMATS
from engine.data.heldout import conversation_of, heldout_prompts
from engine.data.pipeline import (
    IGNORE_INDEX,
    LoadedData,
    PreparedData,
    load_records,
    prepare_data,
    render_segments,
    source_specs,
    split_records,
    token_lengths,
)
from engine.data.preference import PreferenceData, PreferenceReport, prepare_preference_data
from engine.data.preview import Preview, Statistics, data_report, iter_statistics, preview
from engine.data.readers import read_table
from engine.data.render import chat_template_for
from engine.data.tasks import PreferenceShape, detect_preference, preference_record, task_for_data

__all__ = [
    "DataError", "Examples", "FORMATS", "IGNORE_INDEX", "LoadedData", "PreparedData", "PACKED_FORWARD_KWARGS",
    "PreferenceData", "PreferenceReport", "PreferenceShape", "Preview", "Statistics", "block_causal_mask",
    "chat_template_for", "conversation_of", "data_report", "detect_preference", "heldout_prompts", "iter_statistics",
    "load_records", "make_collator", "pack_examples", "prepare_data", "prepare_preference_data",
    "preference_record", "preview", "read_table", "render_segments", "source_specs", "split_records", "task_for_data", "token_lengths",
]
