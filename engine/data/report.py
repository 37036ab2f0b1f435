"""The data report: what was read, how, what was used, what was not and why, by line.

Built from the encoded Arrow rows (encode.py) with numpy, without reading token lists, so it costs
about the same for a million rows as for ten. ``DataReport.to_dict()`` is the JSON of
``peft-studio data run.yaml --json`` (every problem by line); ``text()`` the human report (the
first few of each kind); ``advice()`` the warnings a training run logs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from engine.data.encode import (
    DROPPED_LONG,
    DROPPED_UNTRAINED,
    FILTERED,
    OK,
    ROLE_COLUMNS,
    SKIPPED,
    STATUS,
    TRUNCATED,
)

ISSUES = {"empty_turn": "empty or whitespace-only turns", "no_answer": "prompts without an answer",
          "placeholder": "template placeholders such as {{name}}"}
_REASONS = {TRUNCATED: "{n} tokens, longer than the limit of {limit}: truncated to {limit}",
            DROPPED_LONG: "{n} tokens, longer than the limit of {limit}: dropped",
            DROPPED_UNTRAINED: "{n} tokens and no answer token within the limit of {limit}: dropped",
            FILTERED: "labelled false (data.columns maps label): not trained"}
_BINS = 40


@dataclass
class DataReport:
    """Everything ``peft-studio data`` shows. Shapes (all JSON-able):

    * ``sources``: per file: source, kind, shape (how records are laid out), format, reason,
      columns_used, columns_ignored ({column: records having it, or null}), extra_keys, notes,
      weight, records, examples (trained rows, both splits), skipped, dropped, filtered, truncated,
      used_in_mix (examples the mix drew, several sources only), preference (tasks.PreferenceShape
      as a dict, when the file is preference data that was mapped to SFT);
    * ``template``: what the chat template renders (template.TemplateCaps.notes);
    * ``counts``: records, train_examples, eval_examples, skipped, truncated, dropped_long,
      dropped_untrained, filtered, chunks (extra windows of chunked texts);
    * ``problems``: every record not trained as written: {file, line | record, status, reason, field};
    * ``roles`` (turns per role), ``turns`` ({min, mean, max} per example);
    * ``issues``: {code: {title, count, rows: [{file, line | record, detail}]}} for empty_turn,
      no_answer, placeholder; ``duplicates``: {rows, groups: [[{file, line | record}, ...]]};
      ``placeholders``: {name: {count, filled}};
    * ``lengths``: token lengths of the records before truncation: {edges, counts, mean, p50,
      p90, p99, max, limit, over_limit}; ``tokens``: {total, trained, trained_share} of the
      training examples as trained.
    """

    format: str
    reason: str
    validation: str
    sources: list = field(default_factory=list)
    template: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    roles: dict = field(default_factory=dict)
    turns: dict = field(default_factory=dict)
    issues: dict = field(default_factory=dict)
    duplicates: dict = field(default_factory=dict)
    placeholders: dict = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- for people ------------------------------------------------------------------------
    def advice(self) -> list[str]:
        """Warnings worth a line in a training log (placeholders, duplicates, empty turns, ...)."""
        out = []
        unfilled = [n for n, p in self.placeholders.items() if not p["filled"]]
        if unfilled:
            rows = [r for r in self.issues.get("placeholder", {}).get("rows", []) if r["detail"] in unfilled]
            names = ", ".join("{{" + n + "}}" for n in unfilled[:5])
            example = ", ".join(f"{n}: ..." for n in unfilled[:2])
            out.append(f"{len(rows)} records hold template placeholders ({names}) that would be trained literally "
                       f"({_where(rows)}). Fill them with data.replacements: {{{example}}}, or fix the data.")
        for code in ("empty_turn", "no_answer"):
            issue = self.issues.get(code)
            if issue and issue["count"]:
                out.append(f"{issue['count']} records have {issue['title']} ({_where(issue['rows'])}).")
        if self.duplicates.get("rows"):
            groups = self.duplicates["groups"]
            out.append(f"{self.duplicates['rows']} records are exact duplicates of an earlier one "
                       f"(e.g. {_where(groups[0])}); they are trained as often as they appear.")
        return out

    def log_lines(self) -> list[str]:
        """Decisions worth a log line: columns used and ignored, template notes."""
        out = []
        for s in self.sources:
            ignored = list(s["columns_ignored"]) + [k for k in s["extra_keys"] if k not in s["columns_ignored"]]
            out.append(f"{s['source']}: columns used {', '.join(s['columns_used']) or '(none)'}"
                       + (f"; ignored {', '.join(ignored)}" if ignored else "; none ignored") + ".")
            out += [f"{s['source']}: {n}." for n in s["notes"]]
        return out

    def text(self, shown: int = 5) -> str:
        """The report for a terminal: the first ``shown`` of every list, then how many more."""
        c = self.counts
        lines = [f"Format: {self.format} ({self.reason})"]
        for s in self.sources:
            lines.append(f"Source {s['source']}: {s['shape']}, {s['records']} records → {s['examples']} examples"
                         + (f" (weight {s['weight']:g}, {s['used_in_mix']} drawn into the mix)"
                            if s.get("used_in_mix") is not None else ""))
            lines.append(f"  columns used: {', '.join(s['columns_used']) or '(none)'}")
            ignored = {**s["columns_ignored"], **{k: v for k, v in s["extra_keys"].items()
                                                   if k not in s["columns_ignored"]}}
            lines.append("  columns ignored: " + (", ".join(f"{k}" + (f" ({v} records)" if v is not None else "")
                                                           for k, v in ignored.items()) or "none"))
            lines += [f"  {n}" for n in s["notes"]]
        lines += [f"Template: {n}" for n in self.template]
        lines.append(f"Validation: {self.validation}")
        lines.append(f"Examples: {c['train_examples']} training, {c['eval_examples']} evaluation from "
                     f"{c['records']} records; skipped {c['skipped']}, truncated {c['truncated']}, dropped "
                     f"{c['dropped_long'] + c['dropped_untrained']}" + (f", filtered {c['filtered']}" if c["filtered"]
                                                                       else "")
                     + (f"; {c['chunks']} extra windows from chunked texts" if c.get("chunks") else ""))
        if self.problems:
            lines.append("Not trained as written (by line):")
            for p in self.problems[:shown]:
                lines.append(f"  {_place(p)}: {p['reason']}")
            if len(self.problems) > shown:
                lines.append(f"  … and {len(self.problems) - shown} more (--json lists them all)")
        if self.roles:
            lines.append("Turns by role: " + ", ".join(f"{r} {n}" for r, n in self.roles.items() if n)
                         + f"; per example min {self.turns['min']}, mean {self.turns['mean']:.1f}, "
                         f"max {self.turns['max']}")
        for issue in self.issues.values():
            if issue["count"]:
                lines.append(f"{issue['title'].capitalize()}: {issue['count']}")
                for r in issue["rows"][:shown]:
                    lines.append(f"  {_place(r)}: {r['detail']}")
                if len(issue["rows"]) > shown:
                    lines.append(f"  … and {len(issue['rows']) - shown} more")
        if self.placeholders:
            lines.append("Placeholders: " + ", ".join(
                "{{" + n + "}}" + f" ×{p['count']}" + (" (filled)" if p["filled"] else " (not filled: "
                                                          "set data.replacements)") for n, p in self.placeholders.items()))
        d = self.duplicates
        lines.append(f"Exact duplicates: {d.get('rows', 0)}" + (
            " (e.g. " + ", ".join(_place(g) for g in d["groups"][0]) + ")" if d.get("groups") else ""))
        L = self.lengths
        if L.get("counts"):
            lines.append(f"Token lengths (before truncation): mean {L['mean']:.0f}, median {L['p50']}, p90 {L['p90']}, "
                         f"p99 {L['p99']}, max {L['max']}; {L['over_limit']} over the limit of {L['limit']}")
            lines += _histogram(L)
        t = self.tokens
        lines.append(f"Tokens trained: {t['trained']} of {t['total']} ({100 * t['trained_share']:.1f}% carry loss)")
        return "\n".join(lines)


def _place(p: dict) -> str:
    unit = "line" if p.get("line") is not None else "record"
    return f"{p['file']} {unit} {p.get('line') if unit == 'line' else p.get('record')}"


def _where(rows: list, shown: int = 3) -> str:
    if not rows:
        return ""
    names = [_place(r) for r in rows[:shown]]
    more = len(rows) - shown
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _histogram(L: dict, width: int = 40) -> list[str]:
    counts, edges = L["counts"], L["edges"]
    top = max(counts) or 1
    out = []
    # Merge bins to at most 12 lines for a terminal.
    step = max(1, -(-len(counts) // 12))
    for i in range(0, len(counts), step):
        n = sum(counts[i:i + step])
        lo, hi = edges[i], edges[min(i + step, len(edges) - 1)]
        bar = "█" * max(1 if n else 0, round(width * n / (top * step)))
        out.append(f"  {lo:>7.0f}–{hi:<7.0f} {bar} {n}")
    return out


def _percentile(values, q: float) -> int:
    import numpy as np

    return int(np.percentile(values, q, method="higher")) if len(values) else 0


def _entry(raw, line: int, **extra) -> dict:
    key = "line" if raw.unit == "line" else "record"
    return {"file": raw.source, key: int(line), **extra}


def build_report(encoded, train_parts, val_parts, specs, caps, data_cfg, limit, long_mode, mixed=None,
                 validation_from=None) -> DataReport:
    """The report over every encoded source (pipeline._Encoded), for the selection trained."""
    import json

    import numpy as np
    import pyarrow.compute as pc

    from engine.data.tasks import detect_preference

    train_n = sum(len(p) for _, p in train_parts)
    eval_n = sum(len(p) for _, p in val_parts)
    counts = {"records": 0, "train_examples": train_n, "eval_examples": eval_n, "skipped": 0, "truncated": 0,
              "dropped_long": 0, "dropped_untrained": 0, "filtered": 0, "chunks": 0}
    problems, sources = [], []
    roles = dict.fromkeys(ROLE_COLUMNS, 0)
    turn_counts = []
    issues = {code: {"title": title, "count": 0, "rows": []} for code, title in ISSUES.items()}
    placeholders: dict[str, dict] = {}
    hashes, hash_lines, hash_raw = [], [], []
    full_lengths = []
    replacements = dict(getattr(data_cfg, "replacements", None) or {})
    spec_by_source = {e.raw.source: s for e, s in zip(encoded, list(specs) + [None] * len(encoded))}
    for k, enc in enumerate(encoded):
        raw, cols, table = enc.raw, enc.cols, enc.dataset.data
        st = cols["status"]
        first = cols["chunk"] == 0
        counts["records"] += int(first.sum())
        counts["skipped"] += int((st == SKIPPED).sum())
        counts["truncated"] += int((st == TRUNCATED).sum())
        counts["dropped_long"] += int((st == DROPPED_LONG).sum())
        counts["dropped_untrained"] += int((st == DROPPED_UNTRAINED).sum())
        counts["filtered"] += int((st == FILTERED).sum())
        counts["chunks"] += int((~first).sum())
        # Problems: every record not trained as written, in line order.
        bad = np.nonzero((st != OK) & first)[0]
        errors = {}
        if len(bad):
            skipped = bad[st[bad] == SKIPPED]
            if len(skipped):
                col = table.column("error").take(skipped).to_pylist()
                errors = {int(i): json.loads(e) for i, e in zip(skipped, col)}
        for i in bad:
            i = int(i)
            if i in errors:
                e = errors[i]
                reason = e["problem"] + (f" ({e['hint']})" if e.get("hint") else "")
                problems.append(_entry(raw, cols["line"][i], status=STATUS[st[i]], reason=reason, field=e.get("field")))
            else:
                n = int(cols["full_length"][i])
                problems.append(_entry(raw, cols["line"][i], status=STATUS[st[i]], field=None, tokens=n,
                                       reason=_REASONS[int(st[i])].format(n=n, limit=limit)))
        # Roles, turns, lengths: records that rendered (not skipped or filtered), first windows.
        good = first & (st != SKIPPED) & (st != FILTERED)
        for r in ROLE_COLUMNS:
            roles[r] += int(table.column(f"n_{r}").to_numpy()[good].sum())
        turn_counts.append(sum(table.column(f"n_{r}").to_numpy()[good].astype(np.int64) for r in ROLE_COLUMNS))
        full_lengths.append(cols["full_length"][good])
        # Issues: only the rows that have any are read.
        n_issues = pc.list_value_length(table.column("issues")).to_numpy(zero_copy_only=False)
        with_issues = np.nonzero(n_issues > 0)[0]
        if len(with_issues):
            for i, items in zip(with_issues, table.column("issues").take(with_issues).to_pylist()):
                for item in items:
                    code, _, detail = item.partition("|")
                    issues[code]["count"] += 1
                    issues[code]["rows"].append(_entry(raw, cols["line"][i], detail=detail))
                    if code == "placeholder":
                        p = placeholders.setdefault(detail, {"count": 0, "filled": detail in replacements})
                        p["count"] += 1
        h = table.column("hash").to_numpy()
        hashes.append(h[good])
        hash_lines.append(cols["line"][good])
        hash_raw.append(raw)
        # Columns: used, ignored (with how many records have them), keys outside the detected columns.
        extra: dict[str, int] = defaultdict(int)
        n_extra = pc.list_value_length(table.column("extra_keys")).to_numpy(zero_copy_only=False)
        rows_extra = np.nonzero(n_extra > 0)[0]
        if len(rows_extra):
            for keys in table.column("extra_keys").take(rows_extra).to_pylist():
                for key in keys:
                    extra[key] += 1
        plan = enc.plan
        ignored = {c: extra.get(c, raw.column_counts.get(c)) for c in plan.ignored}
        beyond = {k: n for k, n in extra.items() if k not in raw.columns}
        sample = [r.row for r in raw.samples if r.row is not None]
        pref = detect_preference(raw.columns, sample)
        spec = spec_by_source.get(raw.source)
        kept = (st == OK) | (st == TRUNCATED)
        sources.append({
            "source": raw.source, "kind": raw.kind, "shape": raw.shape, "format": plan.format, "reason": plan.reason,
            "columns_used": plan.used, "columns_ignored": ignored, "extra_keys": beyond, "notes": plan.notes,
            "weight": spec.weight if spec is not None else None, "records": int(first.sum()),
            "examples": int(kept.sum()), "skipped": int((st == SKIPPED).sum()),
            "dropped": int(((st == DROPPED_LONG) | (st == DROPPED_UNTRAINED)).sum()),
            "filtered": int((st == FILTERED).sum()), "truncated": int((st == TRUNCATED).sum()),
            "used_in_mix": len(mixed.per_source[k]) if mixed is not None and k < len(mixed.per_source) else None,
            "preference": pref.to_dict() if pref is not None else None,
        })
    problems.sort(key=lambda p: (p["file"], p.get("line") or p.get("record") or 0))
    # Exact duplicates across all sources: the same normalised record more than once.
    dup = {"rows": 0, "groups": []}
    allh = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.int64)
    if len(allh):
        uniq, inverse, cnt = np.unique(allh, return_inverse=True, return_counts=True)
        dup["rows"] = int((cnt - 1).sum())
        if dup["rows"]:
            starts = np.cumsum([0] + [len(x) for x in hash_lines])
            groups = defaultdict(list)
            for pos in np.nonzero(cnt[inverse] > 1)[0]:
                groups[int(inverse[pos])].append(int(pos))

            def place(pos: int) -> dict:
                k = int(np.searchsorted(starts, pos, side="right") - 1)
                return _entry(hash_raw[k], hash_lines[k][pos - starts[k]])

            dup["groups"] = [[place(p) for p in ps] for ps in groups.values()]
            dup["groups"].sort(key=lambda g: (g[0]["file"], g[0].get("line") or g[0].get("record")))
    lengths = np.concatenate(full_lengths) if full_lengths else np.zeros(0, dtype=np.int64)
    L = {"limit": int(limit), "over_limit": int((lengths > limit).sum()), "edges": [], "counts": []}
    if len(lengths):
        hi = max(int(lengths.max()), 1)
        cnts, edges = np.histogram(lengths, bins=min(_BINS, max(5, int(np.sqrt(len(lengths))))), range=(0, hi))
        L.update(edges=[float(e) for e in edges], counts=[int(x) for x in cnts], mean=float(lengths.mean()),
                 p50=_percentile(lengths, 50), p90=_percentile(lengths, 90), p99=_percentile(lengths, 99),
                 max=int(lengths.max()))
    total = int(sum(e.cols["length"][p].sum() for e, p in train_parts))
    trained = int(sum(e.cols["n_trained"][p].sum() for e, p in train_parts))
    turns = np.concatenate(turn_counts) if turn_counts else np.zeros(0)
    template = caps.notes() if caps is not None else []
    fmt = encoded[0].plan.format if len({e.plan.format for e in encoded}) == 1 else "mixed"
    reason = encoded[0].plan.reason if len(encoded) == 1 else "; ".join(f"{e.raw.source}: {e.plan.reason}"
                                                                         for e in encoded)
    if validation_from:
        validation = f"{eval_n} examples from {validation_from}"
    elif eval_n:
        validation = f"{eval_n} examples held out (data.validation_split={data_cfg.validation_split})"
    else:
        validation = "none"
    return DataReport(
        fmt, reason, validation, sources, template, counts, problems, roles,
        {"min": int(turns.min()) if len(turns) else 0, "mean": float(turns.mean()) if len(turns) else 0.0,
         "max": int(turns.max()) if len(turns) else 0},
        issues, dup, placeholders, L,
        {"total": total, "trained": trained, "trained_share": trained / total if total else 0.0})
