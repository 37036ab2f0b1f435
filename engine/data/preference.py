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
template. Several sources (``data.sources``) are each read and converted with their own columns,
then interleaved by weight exactly as SFT data (``engine.data.mix``); a saved DatasetDict's
validation split is held out as for SFT. The report gives what decides whether the pairs can teach anything: the number of
pairs, the share whose chosen and rejected answers are identical (no signal), and the length
balance (DPO is known to learn "longer is better" when chosen answers are systematically longer:
Park et al. 2024, "Disentangling Length from Quality in DPO", arXiv 2403.19159).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from engine.data.errors import DataError, Where
from engine.data.readers import _item_from_raw, _rows, to_row
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
    ``undesirable``: KTO's label counts; ``skipped``: bad records skipped (data.skip_bad_lines);
    ``validation``: where the held-out rows came from (data.validation_path, a saved DatasetDict's
    validation split, or the data.validation_split hold-out; "" when nothing is held out);
    ``sources``: with data.sources, one dict per source: source, shape, reason, records (read),
    weight and used_in_mix (rows the mix drew); ``shape`` is then ``mixed`` when they differ.
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
    validation: str = ""
    sources: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as readable lines (the training log and ``peft-studio data``)."""
        if self.sources:
            out = [f"a mix of {len(self.sources)} sources (data.sources)"]
            out += [f"{s['source']}: {SHAPES[s['shape']]} ({s['reason']}); {s['records']} records, weight "
                    f"{s['weight']:g}, {s['used_in_mix']} drawn into the mix" for s in self.sources]
        else:
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
        if self.validation:
            out.append(f"held-out rows: {self.validation}")
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
    task; and naming the record for a bad row unless ``skip``. (A saved DatasetDict: its training
    split; ``prepare_preference_data`` reads its validation split too.)"""
    from engine.data.pipeline import open_source

    return read_raw(open_source(path, base_dir, field_name), mapping, expect, skip, system_prompt, field_name)


def read_raw(raw, mapping: dict, expect: str, skip: bool = False, system_prompt: str | None = None,
             field_name: str = "data.path", mixed: bool = False):
    """read_preference of an opened source (readers.RawSource). ``mixed``: the source is one of
    several (data.sources): unpaired data for a paired task is refused naming its entry."""
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
        what = (f"this file holds single answers with a true/false label ({SHAPES[shape.shape]}), not "
                "chosen/rejected pairs")
        if mixed:
            raise DataError(f"{what}, so it cannot be mixed into pairs for {task_words}", file=raw.source,
                            field=field_name, hint="Remove it from data.sources, or train the whole mix with "
                            "train.task: kto (pairs are then split into labelled answers).")
        raise DataError(what, file=raw.source, field="train.task",
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


@dataclass
class _Source:
    """One source read: its spec (pipeline.SourceSpec), the RawSource, records in TRL's form
    (split into labelled answers in a KTO mix), ``read``: the records read."""

    spec: object
    raw: object
    records: list
    shape: PreferenceShape
    bad: list
    read: int = 0


def _unpaired(records: list[dict]) -> list[dict]:
    """Pairs as KTO's labelled answers (TRL's unpair_preference_dataset: chosen → true, rejected → false)."""
    import datasets
    from trl.data_utils import unpair_preference_dataset

    return unpair_preference_dataset(datasets.Dataset.from_list(records)).to_list()


def _dataset(records: list[dict], parts: list[_Source]):
    """records as a datasets.Dataset; rows of different Arrow types (plain-text pairs with an
    implicit prompt mixed with conversations) are refused naming the sources."""
    import datasets
    import pyarrow as pa

    try:
        return datasets.Dataset.from_list(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        styles = {p.raw.source: "plain text" if p.shape.implicit_prompt and p.shape.style == "text"
                  else "conversations" for p in parts}
        raise DataError("the sources write their pairs differently (" + "; ".join(f"{k}: {v}" for k, v in
                        styles.items()) + "), so their rows cannot form one data set", field="data.sources",
                        hint="Mix sources that are all conversations (or prompts with answers), or all plain "
                             "text; or train them one at a time.") from None


def prepare_preference_data(data_cfg, expect: str, tokenizer=None, seed: int = 42, reporter=None,
                            base_dir=None) -> PreferenceData:
    """data.path, or the mix of data.sources, as TRL's columns for a task whose data is ``expect``
    (``paired`` or ``unpaired``), with its held-out rows and its PreferenceReport.

    Every source is read and converted with its own columns (its ``columns``, else data.columns; a
    mix may hold several shapes: they all become TRL's columns); several are interleaved by weight with the SFT path's
    mix (mix.interleave_order: data.mix_stopping, the seed). For KTO, paired sources of a mix are
    split into labelled answers before mixing. Held out, in this order: data.validation_path, a
    saved DatasetDict's validation split (data.path alone, as for SFT), or data.validation_split of
    the records (of the mix). Honours data.skip_bad_lines, data.system_prompt, data.max_examples.
    Raises DataError naming the file, record and field."""
    from engine.data.mix import interleave_order
    from engine.data.pipeline import open_source, source_specs, split_records

    log = getattr(reporter, "log", None) or (lambda msg: None)
    specs = source_specs(data_cfg)
    mixed = len(specs) > 1 or bool(getattr(data_cfg, "sources", None))
    skip = bool(data_cfg.skip_bad_lines)
    sp = data_cfg.system_prompt
    parts = []
    for spec in specs:
        raw = open_source(spec.path, base_dir, spec.field)
        records, shape, bad = read_raw(raw, dict(spec.columns or {}), expect, skip, sp, spec.field, mixed)
        parts.append(_Source(spec, raw, records, shape, bad, len(records)))
    bad = [e for p in parts for e in p.bad]
    first = parts[0]
    # A mix for KTO: each paired source split into labelled answers first, so all rows agree.
    unpair_mix = mixed and expect == "unpaired"
    if unpair_mix:
        for p in parts:
            if p.shape.task == "paired":
                p.records = _unpaired(p.records)
    if mixed:
        stopping = getattr(data_cfg, "mix_stopping", "first_exhausted")
        s_col, i_col = interleave_order([len(p.records) for p in parts], [p.spec.weight for p in parts], seed,
                                        stopping)
        records = [parts[s].records[i] for s, i in zip(s_col.tolist(), i_col.tolist())]
        used = [len(set(i_col[s_col == k].tolist())) for k in range(len(parts))]
        log("Mixed " + ", ".join(f"{n} from {p.raw.source} (weight {p.spec.weight:g})" for p, n in zip(parts, used))
            + f" ({stopping}).")
    else:
        records, used = first.records, [len(first.records)]
    held: list[dict] = []
    validation = ""
    if data_cfg.validation_path:
        held, vshape, vbad = read_preference(data_cfg.validation_path, dict(specs[0].columns or {}), expect, base_dir,
                                             skip, sp, field_name="data.validation_path")
        if unpair_mix and vshape.task == "paired":
            held = _unpaired(held)
        bad += vbad
        validation = f"{len(held)} from {data_cfg.validation_path} (data.validation_path)"
    elif not mixed and first.raw.validation is not None:
        # A saved DatasetDict's validation split (readers.VALIDATION_SPLITS), as the SFT pipeline uses it.
        vraw = first.raw.validation
        held, _, vbad = read_raw(vraw, dict(first.spec.columns or {}), expect, skip, sp, "data.path")
        bad += vbad
        validation = f"{len(held)} from {vraw.source}, the saved dataset's validation split"
    elif data_cfg.validation_split > 0 and len(records) >= 2:
        keep, out = split_records(len(records), data_cfg.validation_split, seed)
        records, held = [records[i] for i in keep], [records[i] for i in out]
        validation = (f"{len(held)} of {len(records) + len(held)} {'mixed rows' if mixed else 'records'} held out "
                      f"(data.validation_split={data_cfg.validation_split}, seed {seed})")
    if validation:
        log(f"Validation: {validation}.")
    if data_cfg.max_examples and data_cfg.max_examples > 0:
        records = records[:data_cfg.max_examples]
    shapes = {p.shape.shape for p in parts}
    # A KTO mix's rows are labelled answers whatever the sources' shapes: reported as such.
    rshape = replace(first.shape, task="unpaired") if unpair_mix else first.shape
    report = preference_report(records, rshape, str(data_cfg.path), tokenizer, eval_n=len(held), skipped=len(bad))
    report.validation = validation
    if mixed:
        report.source = ", ".join(p.raw.source for p in parts)
        report.shape = first.shape.shape if len(shapes) == 1 else "mixed"
        report.reason = "; ".join(f"{p.raw.source}: {p.shape.reason}" for p in parts)
        report.sources = [{"source": p.raw.source, "shape": p.shape.shape, "reason": p.shape.reason,
                           "records": p.read, "weight": p.spec.weight, "used_in_mix": n}
                          for p, n in zip(parts, used)]
    if bad and reporter is not None:
        reporter.warn(f"{len(bad)} bad records skipped (first: {bad[0]})")
    train = _dataset(records, parts)
    evalds = _dataset(held, parts) if held else None
    if expect == "unpaired" and not unpair_mix and first.shape.task == "paired":
        # KTO from pairs: the chosen answer becomes a desirable row, the rejected one an undesirable row.
        from trl.data_utils import unpair_preference_dataset

        train = unpair_preference_dataset(train)
        evalds = unpair_preference_dataset(evalds) if evalds is not None else None
        report.desirable = report.undesirable = report.pairs
        report.notes.append(f"each pair split into a desirable and an undesirable answer for KTO: "
                            f"{2 * report.pairs} answers")
    if expect == "unpaired":
        # KTOTrainer reads the rows in order (its KL term pairs neighbours in a batch): shuffled once,
        # seeded, so that a batch holds both labels (unpairing puts every chosen answer first).
        train = train.shuffle(seed=seed).flatten_indices()
    return PreferenceData(train, evalds, first.shape, report)

