"""Preference data for TRL's trainers: any shape people have → TRL's columns, and its report.

``train.task`` dpo, orpo and simpo learn from chosen/rejected pairs, kto from single answers
labelled good or bad (engine/tasks.py). The shapes (``engine.data.tasks.SHAPES``) are detected by
``detect_preference`` from the file's columns, and each row is converted by ``preference_record``
to TRL's conversational form:

* paired: ``{"prompt": [messages], "chosen": [assistant messages], "rejected": [...]}`` (an
  implicit prompt in plain text: ``{"prompt": str, "chosen": str, "rejected": str}``);
* unpaired: ``{"prompt": [...], "completion": [...], "label": bool}``. Paired data given to KTO
  is split into one desirable and one undesirable row with TRL's ``unpair_preference_dataset``.

The file is read by the same Arrow reader as SFT data (``readers.open_raw``: one read, cached),
and the result is a ``datasets.Dataset`` in memory that TRL tokenizes with the model's chat
template. The report gives what decides whether the pairs can teach anything: the number of
pairs, the share whose chosen and rejected answers are identical (no signal), and the length
balance (DPO is known to learn "longer is better" when chosen answers are systematically longer:
Park et al. 2024, "Disentangling Length from Quality in DPO", arXiv 2403.19159).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.data.errors import DataError, Where
from engine.data.readers import _item_from_raw, _rows, open_raw, to_row
from engine.data.tasks import SHAPES, PreferenceShape, detect_preference, preference_record

_BATCH = 1000


@dataclass
class PreferenceReport:
    """What a preference data set holds (all JSON-able).

    ``pairs``: training rows (pairs for paired data, answers for unpaired); ``eval``: held-out
    rows; ``identical``: share (0–1) of pairs whose chosen and rejected answers are the same text;
    ``chosen_tokens``/``rejected_tokens``: mean tokens of the answers (characters when no
    tokenizer was given: ``length_unit``); ``length_ratio``: chosen / rejected mean length;
    ``chosen_longer``: share of pairs whose chosen answer is the longer one; ``desirable``/
    ``undesirable``: KTO's label counts; ``skipped``: bad records skipped (data.skip_bad_lines).
    """

    source: str
    shape: str
    reason: str
    task: str
    pairs: int = 0
    eval: int = 0
    identical: float = 0.0
    chosen_tokens: float = 0.0
    rejected_tokens: float = 0.0
    length_ratio: float | None = None
    chosen_longer: float | None = None
    length_unit: str = "tokens"
    desirable: int = 0
    undesirable: int = 0
    skipped: int = 0
    notes: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as readable lines (the training log and ``peft-studio data``)."""
        out = [f"{self.source}: {SHAPES[self.shape]} ({self.reason})"]
        if self.task == "unpaired":
            out.append(f"{self.pairs} answers for training ({self.desirable} desirable, {self.undesirable} "
                       f"undesirable), {self.eval} held out")
        else:
            out.append(f"{self.pairs} pairs for training, {self.eval} held out")
            out.append(f"identical chosen and rejected answers: {100 * self.identical:.1f}% of pairs")
            if self.length_ratio is not None:
                out.append(f"length balance: chosen {self.chosen_tokens:.1f} {self.length_unit} on average, "
                           f"rejected {self.rejected_tokens:.1f} (ratio {self.length_ratio:.2f}); the chosen "
                           f"answer is the longer one in {100 * (self.chosen_longer or 0):.0f}% of pairs")
        if self.skipped:
            out.append(f"{self.skipped} bad records skipped (data.skip_bad_lines)")
        return out + list(self.notes)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class PreferenceData:
    """TRL's columns for a run: ``train``/``eval`` are ``datasets.Dataset`` (eval None when
    nothing is held out); ``shape`` the detected shape; ``report`` its PreferenceReport."""

    train: object
    eval: object | None
    shape: PreferenceShape
    report: PreferenceReport
    format: str = "preference"


def _iter_rows(raw):
    """(row dict | None, Where, DataError | None) for every record of a RawSource, in order."""
    ds = raw.dataset
    if raw.typed:
        for start in range(0, len(ds), _BATCH):
            for k, row in enumerate(_rows(ds[start:start + _BATCH]), start + 1):
                yield row, Where(raw.source, record=k), None
        return
    for i in range(len(ds)):
        r = to_row(_item_from_raw(ds, i, raw.source, raw.unit))
        yield r.row, r.where, r.error


def _renamed(row: dict, mapping: dict) -> dict:
    """data.columns (role → the file's column) applied: the file's columns renamed to the roles."""
    if not mapping:
        return row
    out = {k: v for k, v in row.items() if k not in mapping.values()}
    for role, col in mapping.items():
        if col in row:
            out[role] = row[col]
    return out


def _slim(turns):
    """Messages as role/content only, so every row has the same Arrow type (TRL reads no more)."""
    if isinstance(turns, str):
        return turns
    return [{"role": t["role"], "content": t.get("content") or ""} for t in turns]


def _text(turns) -> str:
    return turns if isinstance(turns, str) else "\n".join(t["content"] for t in turns)


def read_preference(path: str, mapping: dict, expect: str, base_dir=None, skip: bool = False,
                    system_prompt: str | None = None, field_name: str = "data.path"):
    """Records of one file in TRL's form: (records, shape, skipped DataErrors).

    ``expect``: the task's data (``paired`` or ``unpaired``). Raises DataError naming the file
    (and ``field_name``) when the file is not preference data, or holds unpaired data for a paired
    task; and naming the record for a bad row unless ``skip``."""
    raw = open_raw(path, base_dir, "document")
    sample = [r.row for r in raw.samples if r.row is not None]
    columns = list(raw.columns)
    if mapping:
        sample = [_renamed(r, mapping) for r in sample]
        columns = list(dict.fromkeys([*(c for c in columns if c not in mapping.values()), *mapping]))
    shape = detect_preference(columns, sample)
    task_words = "train.task kto" if expect == "unpaired" else "train.task dpo, orpo and simpo"
    if shape is None:
        wanted = ("prompt/completion/label (or messages/label, or chosen/rejected pairs)" if expect == "unpaired"
                  else "prompt/chosen/rejected (or messages, conversations or instruction with chosen/rejected)")
        raise DataError(f"this is not preference data: {task_words} need columns {wanted}, and the file has "
                        f"{', '.join(raw.columns) or 'no columns'}", file=raw.source, field=field_name,
                        hint="Point data.path at preference data, map its columns with data.columns (e.g. "
                             "{chosen: good, rejected: bad}), or set train.task: sft.")
    if expect == "paired" and shape.task == "unpaired":
        raise DataError(f"this file holds single answers with a true/false label ({SHAPES[shape.shape]}), not "
                        "chosen/rejected pairs", file=raw.source, field="train.task",
                        hint="Train it with train.task: kto, which learns from labelled single answers.")
    records, bad = [], []
    for row, where, err in _iter_rows(raw):
        try:
            if err is not None:
                raise err
            rec = preference_record(_renamed(row, mapping), shape, where)
            for key in ("prompt", "chosen", "rejected", "completion"):
                if key in rec:
                    rec[key] = _slim(rec[key])
            if shape.task == "paired" and (not _text(rec["chosen"]).strip() or not _text(rec["rejected"]).strip()):
                raise where.error("an empty chosen or rejected answer", field=shape.columns.get("chosen"),
                                  hint="Fix the record, or set data.skip_bad_lines: true to skip it.")
            if system_prompt and isinstance(rec["prompt"], list) and not any(
                    t["role"] == "system" for t in rec["prompt"]):
                rec["prompt"] = [{"role": "system", "content": system_prompt}, *rec["prompt"]]
            records.append(rec)
        except DataError as e:
            if not skip:
                raise
            bad.append(e)
    if not records:
        raise DataError("no usable preference records" + (f": all {len(bad)} were bad" if bad else ""),
                        file=raw.source, field=field_name)
    return records, shape, bad


def _lengths(texts: list[str], tokenizer) -> list[int]:
    if tokenizer is None:
        return [len(t) for t in texts]
    out = []
    for start in range(0, len(texts), _BATCH):
        enc = tokenizer(texts[start:start + _BATCH], add_special_tokens=False)["input_ids"]
        out += [len(x) for x in enc]
    return out


def preference_report(records: list[dict], shape: PreferenceShape, source: str, tokenizer=None,
                      eval_n: int = 0, skipped: int = 0) -> PreferenceReport:
    """The report of ``records`` (TRL's form, before unpairing). Lengths in tokens of the answers'
    text with ``tokenizer`` (no chat-template tokens), else characters."""
    rep = PreferenceReport(source, shape.shape, shape.reason, shape.task, pairs=len(records), eval=eval_n,
                           skipped=skipped, length_unit="tokens" if tokenizer is not None else "characters")
    if shape.task == "unpaired":
        rep.desirable = sum(1 for r in records if r["label"])
        rep.undesirable = len(records) - rep.desirable
        if rep.desirable == 0 or rep.undesirable == 0:
            rep.notes.append("every answer has the same label: KTO needs both desirable and undesirable answers "
                             "to learn a preference")
        return rep
    chosen = [_text(r["chosen"]) for r in records]
    rejected = [_text(r["rejected"]) for r in records]
    rep.identical = sum(c == r for c, r in zip(chosen, rejected)) / max(len(records), 1)
    lc, lr = _lengths(chosen, tokenizer), _lengths(rejected, tokenizer)
    rep.chosen_tokens = sum(lc) / max(len(lc), 1)
    rep.rejected_tokens = sum(lr) / max(len(lr), 1)
    rep.length_ratio = rep.chosen_tokens / rep.rejected_tokens if rep.rejected_tokens else None
    rep.chosen_longer = sum(a > b for a, b in zip(lc, lr)) / max(len(lc), 1)
    if rep.identical > 0:
        rep.notes.append(f"{round(rep.identical * len(records))} pairs have identical answers: they teach nothing "
                         "(their DPO loss stays at log 2)")
    if rep.length_ratio is not None and (rep.length_ratio > 1.5 or rep.length_ratio < 1 / 1.5):
        rep.notes.append("the chosen and rejected answers differ much in length: the model may learn to prefer "
                         "length rather than quality (consider length-normalised losses: train.task simpo or orpo)")
    return rep


def prepare_preference_data(data_cfg, expect: str, tokenizer=None, seed: int = 42, reporter=None,
                            base_dir=None) -> PreferenceData:
    """data.path (and data.validation_path, or a held-out data.validation_split) as TRL's columns
    for a task whose data is ``expect`` (``paired`` or ``unpaired``). Honours data.columns,
    data.skip_bad_lines, data.system_prompt and data.max_examples; data.sources (mixing) is SFT
    only. Raises DataError naming the file, record and field."""
    import datasets

    from engine.data.pipeline import split_records

    if getattr(data_cfg, "sources", None):
        raise DataError("mixing several files (data.sources) is for supervised data only", field="data.sources",
                        hint="Merge the preference files into one, or set data.path to one of them.")
    mapping = dict(data_cfg.columns or {})
    skip = bool(data_cfg.skip_bad_lines)
    records, shape, bad = read_preference(data_cfg.path, mapping, expect, base_dir, skip, data_cfg.system_prompt)
    held: list[dict] = []
    if data_cfg.validation_path:
        held, _, vbad = read_preference(data_cfg.validation_path, mapping, expect, base_dir, skip,
                                        data_cfg.system_prompt, field_name="data.validation_path")
        bad += vbad
    elif data_cfg.validation_split > 0 and len(records) >= 2:
        keep, out = split_records(len(records), data_cfg.validation_split, seed)
        records, held = [records[i] for i in keep], [records[i] for i in out]
    if data_cfg.max_examples and data_cfg.max_examples > 0:
        records = records[:data_cfg.max_examples]
    report = preference_report(records, shape, str(data_cfg.path), tokenizer, eval_n=len(held), skipped=len(bad))
    if bad and reporter is not None:
        first = bad[0]
        reporter.warn(f"{len(bad)} bad records skipped (first: {first})")
    train = datasets.Dataset.from_list(records)
    evalds = datasets.Dataset.from_list(held) if held else None
    if expect == "unpaired" and shape.task == "paired":
        # KTO from pairs: the chosen answer becomes a desirable row, the rejected one an undesirable row.
        from trl.data_utils import unpair_preference_dataset

        train = unpair_preference_dataset(train)
        evalds = unpair_preference_dataset(evalds) if evalds is not None else None
    if expect == "unpaired":
        # KTOTrainer reads the rows in order (its KL term pairs neighbours in a batch): shuffled once,
        # seeded, so that a batch holds both labels (unpairing puts every chosen answer first).
        train = train.shuffle(seed=seed).flatten_indices()
        report.desirable = report.undesirable = report.pairs
        report.notes.append(f"each pair split into a desirable and an undesirable answer for KTO: "
                            f"{2 * report.pairs} answers")
    return PreferenceData(train, evalds, shape, report)
