"""The Data tab's report: what the engine used, what it ignored and why, every record it did not
train as written (by line), statistics over every source, and one-click fixes.

The numbers come from the "data_report" job (studio/data_jobs.py) in the data helper process:
first what each source is read as, then statistics that grow while the files are read (the
window stays responsive: nothing here reads a file), then — for data of a reasonable size, or on
request — the engine's complete report (engine.data.data_report, which also fills the data cache
so Start skips the preparation).

A fix changes the control the window shows (``sig_fix(path, value)``; the Data panel applies it)
and is named in the window's words (studio/wording.py), never as a run-file key.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.forms import ERROR_COLOR
from studio.tasks import LatestJob
from studio.widgets import heading, muted
from studio.wording import control_name, window_text

SHOWN_PROBLEMS = 500    # rows in the "not trained as written" table (the count says how many more)
STATUS_WORDS = {"skipped": "skipped", "truncated": "truncated", "dropped_long": "dropped (too long)",
                "dropped_untrained": "dropped (nothing to learn)", "filtered": "not trained (label false)"}


# ---- fixes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fix:
    """A setting the report suggests: ``path`` (run-file key), the ``value`` to give it, the
    button's ``label`` and a sentence saying ``why`` (both in the window's words)."""

    path: str
    value: object
    label: str
    why: str


def _n(n: int, word: str) -> str:
    """``1 record``, ``2 records``, ``1,234 records``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _max_length_for(p99: int, limit: int) -> int:
    """p99 rounded up to a multiple of 8 (tensor-core friendly shapes), at least one above ``limit``."""
    return max(limit + 1, -(-int(p99) // 8) * 8)


def _data_kind(task: str | None) -> str | None:
    """What a train.task learns from: ``sft`` examples, ``paired`` or ``unpaired`` preferences."""
    from engine.tasks import get_task

    if not task:
        return None
    t = get_task(task)
    return t.data if t.is_preference else "sft"


TASK_DATA_WORDS = {"paired": "preference pairs (chosen/rejected)", "unpaired": "answers labelled good or bad",
                   "sft": "supervised examples (prompts with the answers to learn)"}


def task_fix(result: dict, task: str | None) -> Fix | None:
    """"Set Training › Task to dpo" (kto, sft) when the data was refused because it serves another
    task than ``task`` (the one set now): the job's ``fits`` (engine.data.task_for_data)."""
    fits = result.get("fits")
    task = task or result.get("task")
    if result.get("stage") != "error" or not fits or _data_kind(fits) == _data_kind(task):
        return None
    what = TASK_DATA_WORDS[_data_kind(fits)]
    also = {"dpo": " (orpo and simpo learn from pairs too)",
            "kto": " (KTO learns from single answers marked good or bad; pairs in the mix are split)"}.get(fits, "")
    return Fix("train.task", fits, f"Set Training › Task to {fits}",
               f"This data holds {what}, which {task or 'this task'} cannot learn from: set "
               f"{control_name('train.task')} to {fits}{also}.")


def suggest_fixes(result: dict, values: dict, task: str | None = None) -> list[Fix]:
    """The one-click fixes for a data_report job's result (or partial) ``result``, given the data
    settings shown (``values``: DataPanel.values()[0]) and the train.task set now (``task``; the
    result's when None). Only settings that are safe to change without reading the data again by
    eye: the task the data serves, skip the bad rows, raise max_length to cover the 99th
    percentile, map a preference file's chosen answers for SFT, list the unfilled placeholders
    for the user to fill."""
    out: list[Fix] = []
    fix = task_fix(result, task)
    if fix is not None:
        out.append(fix)
    stats = result.get("statistics") or result.get("total") or {}
    report = result.get("report") or {}
    counts = report.get("counts") or {}
    skipped = counts.get("skipped", stats.get("skipped", 0)) or 0
    if skipped and not values.get("skip_bad_lines"):
        out.append(Fix("data.skip_bad_lines", True, f"Skip the {_n(skipped, 'bad record')}",
                       f"{_n(skipped, 'record')} cannot be read as written (listed below): tick "
                       f"{control_name('data.skip_bad_lines')} to train on the rest."))
    lengths = report.get("lengths") or {}
    limit = int(values.get("max_length") or lengths.get("limit") or 0)
    p99 = lengths.get("p99")
    if p99 and limit and p99 > limit and (values.get("long_examples") or "truncate") != "chunk":
        new = _max_length_for(p99, limit)
        out.append(Fix("data.max_length", new, f"Raise max length to {new}",
                       f"99% of the records are at most {p99} tokens long, and {lengths.get('over_limit', 0):,} are "
                       f"over {limit}: set {control_name('data.max_length')} to {new} so they are not cut."))
    detected = result.get("detected")
    mapping = (detected or {}).get("sft_mapping")
    if result.get("stage") == "error" and mapping and not values.get("columns") and \
            _data_kind(task or result.get("task") or "sft") == "sft":
        pairs = ", ".join(f"{k} ← {v}" for k, v in mapping.items())
        kind = "preference pairs (chosen/rejected)" if detected.get("task") == "paired" else \
            "answers labelled good or bad"
        out.append(Fix("data.columns", dict(mapping), "Train the chosen answers (SFT)",
                       f"This file holds {kind}; as it is, SFT would train the wrong tokens. Set "
                       f"{control_name('data.columns')} to {pairs} to train only the preferred answers "
                       f"(preference training itself is a training task, not a data setting)."))
    placeholders = report.get("placeholders") or {}
    unfilled = [n for n, p in placeholders.items() if not p.get("filled")]
    if unfilled:
        current = dict(values.get("replacements") or {})
        new = {**current, **{n: "" for n in unfilled if n not in current}}
        names = ", ".join("{{" + n + "}}" for n in unfilled[:4])
        out.append(Fix("data.replacements", new, "Fill the placeholders…",
                       f"The data holds template placeholders ({names}) that would be trained literally: "
                       f"type their values in {control_name('data.replacements')}."))
    return out


# ---- the job --------------------------------------------------------------------------------------

class ReportJob(LatestJob):
    """LatestJob with the task's partial results and status relayed (the statistics grow)."""

    sig_partial = Signal(object)
    sig_status = Signal(str)

    def _fire(self):
        super()._fire()
        self.task.sig_partial.connect(self.sig_partial)
        self.task.sig_status.connect(self.sig_status)


def _item(text, tip: str = "", right: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem(str(text))
    if tip:
        it.setToolTip(tip)
    if right:
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return it


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 8)  # one line a row: compact
    t.setWordWrap(False)
    hh = t.horizontalHeader()
    for i in range(len(headers) - 1):
        hh.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
    hh.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    return t


def _where(p: dict) -> str:
    """``train.jsonl line 7`` (file name only: the Sources table has the whole path)."""
    from pathlib import Path

    if not p.get("file") and p.get("where"):  # the statistics' "/path/f.jsonl line 7"
        w = str(p["where"])
        for unit in (" line ", " record "):
            head, sep, tail = w.rpartition(unit)
            if sep:
                return f"{Path(head).name}{sep}{tail}"
        return Path(w).name
    f = Path(str(p.get("file") or "")).name
    if p.get("line") is not None:
        return f"{f} line {p['line']}"
    if p.get("record") is not None:
        return f"{f} record {p['record']}"
    return str(p.get("where") or f)


class DataReportView(QWidget):
    """The report as the window shows it. Feed it with ``request(cfg_dict, values)``; it runs the
    data_report job (debounced, newest only) and fills in as results arrive."""

    sig_fix = Signal(str, object)     # run-file path, new value
    sig_updated = Signal()            # a partial or the result was shown (tests, the walk)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: dict = {}        # the newest partial or result, as the job sent it
        self.plans: list = []
        self.fixes: list[Fix] = []
        self._values: dict = {}
        self._cfg: dict | None = None
        self._task: str | None = None     # train.task set now (the task fix follows it)
        self.complete = False         # the engine's full report is shown
        self._plain_lines: list[str] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.status = muted("")
        self.status.setObjectName("report-status")
        self.status.setWordWrap(True)
        top.addWidget(self.status, 1)
        self.full_btn = QPushButton("Full report")
        self.full_btn.setToolTip("Prepare the whole data set as training will (worker processes, the data cache): "
                                 "every record not trained as written, by line, and the token statistics. "
                                 "Start then skips the preparation.")
        self.full_btn.clicked.connect(self.request_full)
        self.full_btn.hide()
        top.addWidget(self.full_btn, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(top)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.progress.hide()
        lay.addWidget(self.progress)

        self.fix_box = QWidget()
        self.fix_lay = QVBoxLayout(self.fix_box)
        self.fix_lay.setContentsMargins(0, 0, 0, 0)
        self.fix_box.hide()
        lay.addWidget(self.fix_box)

        lay.addWidget(heading("Sources: what was used, what was ignored and why"))
        self.sources = _table(["File", "Format", "Records", "Trained", "Skipped", "Dropped"])
        self.sources.setObjectName("report-sources")
        self.sources.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.sources.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.ResizeToContents)
        # short numbers only (the mix and the columns are in the line below): no horizontal scroll
        # bar to hide a row behind in a narrow tab
        self.sources.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.sources.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay.addWidget(self.sources)
        self.columns = QLabel("")
        self.columns.setObjectName("report-columns")
        self.columns.setWordWrap(True)
        self.columns.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.columns)
        self.problems_head = heading("Not trained as written")
        lay.addWidget(self.problems_head)
        self.problems = _table(["Where", "What", "Why"])
        self.problems.setObjectName("report-problems")
        self.problems.setMinimumHeight(150)
        lay.addWidget(self.problems, 1)
        # Token lengths over every source, filled in while the files are read (the examples tab's
        # histogram is of the preview's sample of the first file).
        self.hist_slot = QWidget()
        self.hist_slot.setObjectName("report-lengths")
        self.hist_slot.setFixedHeight(170)
        QVBoxLayout(self.hist_slot).setContentsMargins(0, 0, 0, 0)
        self.hist_slot.hide()
        self.plot = self.bars = self.limit_line = None
        self.hist_counts: list[int] = []
        lay.addWidget(self.hist_slot)
        # The findings (counts, lengths, loss share, duplicates, template notes) after the by-source
        # and by-line tables: those are what a person acts on first.
        lay.addWidget(heading("Findings"))
        self.summary = QLabel("")
        self.summary.setObjectName("report-summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)

        self.job = ReportJob("data_report", delay_ms=700, parent=self, lane="data")
        self.job.sig_started.connect(self._started)
        self.job.sig_status.connect(lambda s: self.status.setText(window_text(s) + "…"))
        self.job.sig_partial.connect(self._on_partial)
        self.job.sig_result.connect(self._on_result)
        self.job.sig_error.connect(self._on_error)

    # ---- requests -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job.busy

    def request(self, cfg: dict, values: dict) -> None:
        """Report on ``cfg`` (RunConfig.to_dict()); ``values``: the data settings shown, for the fixes."""
        self._cfg, self._values = cfg, dict(values)
        self._task = (cfg.get("train") or {}).get("task")
        self.job.request(cfg, "auto")
        if self.result:
            self._show_fixes()   # a fix the new settings made moot goes at once, not with the new report

    def request_full(self) -> None:
        if self._cfg is not None:
            self.job.run_now(self._cfg, True)

    def set_values(self, values: dict, task: str | None = None) -> None:
        """The settings changed without a new report (e.g. a fix applied): the fixes follow.
        ``task``: train.task, when it changed."""
        self._values = dict(values)
        self._task = task or self._task
        self._show_fixes()

    def cancel(self) -> None:
        self.job.cancel()

    @Slot()
    def _started(self):
        self.complete = False
        self.status.setText("Reading the data…")
        self.progress.setValue(0)
        self.progress.show()
        self.full_btn.hide()

    # ---- results ------------------------------------------------------------------------------
    @Slot(object)
    def _on_partial(self, value: dict) -> None:
        if value.get("stage") == "plan":
            self.plans = value.get("plans") or []
            self._fill_sources(value)
        else:
            self.result = value
            total = value.get("total") or {}
            self.progress.setValue(int(1000 * min(1.0, float(total.get("progress") or 0.0))))
            self._fill_all(value, total.get("problems") or [], None, total.get("lengths") or {})
            self._show_fixes()
        self.sig_updated.emit()

    def _fill_all(self, value: dict, problems: list, problems_total, lengths: dict) -> None:
        """Sources, summary, problems and histogram from one answer (statistics or report)."""
        self._fill_sources(value)
        self._fill_summary(value)
        self._fill_problems(problems, problems_total)
        self._fill_histogram(lengths)

    @Slot(object)
    def _on_result(self, value: dict) -> None:
        self.result = value
        self.plans = value.get("plans") or self.plans
        self.progress.hide()
        stage = value.get("stage")
        self.status.setStyleSheet("")
        if stage == "error":
            where = f" ({value['source']})" if value.get("source") else ""
            self.status.setText(f"This data cannot be trained as it is{where}: {window_text(value.get('error', ''))}")
            self.status.setStyleSheet(f"color: {ERROR_COLOR};")
            self._fill_sources(value)
        elif stage == "report":
            self.complete = True
            r = value["report"]
            c = r.get("counts") or {}
            self.status.setText(f"Complete report: {c.get('train_examples', 0):,} training and "
                                f"{c.get('eval_examples', 0):,} evaluation examples from {c.get('records', 0):,} "
                                f"records. Start reuses this preparation.")
            self._fill_all(value, r.get("problems") or [], value.get("problems_total"), r.get("lengths") or {})
        elif stage == "preference":
            self.complete = True
            self._fill_preference(value)
        elif stage == "statistics":
            total = value.get("total") or {}
            self.status.setText(f"Statistics of all {total.get('records', 0):,} records. The full report (every "
                                f"problem by line, the columns each record used) prepares the data as training "
                                f"will: press Full report.")
            self.full_btn.show()
            self._fill_all(value, total.get("problems") or [], None, total.get("lengths") or {})
        self._show_fixes()
        self.sig_updated.emit()

    @Slot(object)
    def _on_error(self, exc) -> None:
        from studio.messages import window_message

        self.progress.hide()
        self.status.setText(window_message(exc))
        self.status.setStyleSheet(f"color: {ERROR_COLOR};")
        self.sig_updated.emit()

    # ---- filling ------------------------------------------------------------------------------
    def _fill_sources(self, value: dict) -> None:
        names = value.get("names") or [p.get("source") for p in self.plans]
        report_sources = {s["source"]: s for s in ((value.get("report") or {}).get("sources") or [])}
        stats = {s.get("source"): s for s in (value.get("sources") or []) if s}
        plans = {p.get("source"): p for p in self.plans}
        self.sources.setRowCount(len(names))
        column_lines = []
        for row, name in enumerate(names):
            plan, st = plans.get(name) or {}, stats.get(name) or {}
            rep = next((s for k, s in report_sources.items() if k == name or str(k).endswith(str(name))), None)
            fmt = (rep or plan).get("format") or ("—" if not plan.get("error") else "refused")
            reason = window_text((rep or plan).get("reason") or plan.get("error") or "")
            records = rep["records"] if rep else st.get("records")
            trained = rep["examples"] if rep else st.get("examples")
            skipped = rep["skipped"] if rep else st.get("skipped")
            dropped = rep["dropped"] if rep else st.get("dropped")
            trained_text = "" if trained is None else f"{trained:,}"
            cols = self._columns_text(rep or plan)
            if rep and rep.get("used_in_mix") is not None:
                cols = f"{rep['used_in_mix']:,} examples drawn into the mix (weight {rep['weight']:g}); " + cols
            from pathlib import Path

            short = Path(str(name)).name
            if cols:
                column_lines.append(f"<b>{html.escape(short)}</b> — {html.escape(cols)}")
            self.sources.setItem(row, 0, _item(short, str(name)))
            self.sources.setItem(row, 1, _item(fmt, reason))
            for col, n in ((2, records), (4, skipped), (5, dropped)):
                self.sources.setItem(row, col, _item("" if n is None else f"{n:,}", right=True))
            self.sources.setItem(row, 3, _item(trained_text, right=True))
            notes = [window_text(n) for n in (rep or plan).get("notes") or []]
            if notes:
                column_lines[-1:] = [(column_lines[-1] if column_lines else short) + " " +
                                     html.escape(" ".join(n.rstrip(".") + "." for n in notes))]
        rows_h = self.sources.verticalHeader().defaultSectionSize() * (len(names) + 1)
        self.sources.setFixedHeight(rows_h + 2 * self.sources.frameWidth() + 2)
        self.columns.setText("<br>".join(column_lines))
        self._plain_lines = [html.unescape(re.sub(r"<[^>]+>", "", x)) for x in column_lines]

    def _fill_preference(self, value: dict) -> None:
        """A preference task's report (studio.data_jobs.preference_report): each source with its
        shape and the rows the mix drew, and the PreferenceReport's lines as the findings."""
        from pathlib import Path

        rep = value.get("preference") or {}
        unit = "answers" if rep.get("task") == "unpaired" else "pairs"
        self.status.setText(f"Preference data: {value.get('train', 0):,} {unit} for training and "
                            f"{value.get('eval', 0):,} held out, read as {self._task or 'the task'} will read them.")
        sources = rep.get("sources") or [{"source": rep.get("source"), "shape": rep.get("shape"),
                                          "reason": rep.get("reason"), "records": rep.get("pairs", 0) + rep.get("eval", 0)}]
        self.sources.setRowCount(len(sources))
        lines = []
        for row, src in enumerate(sources):
            self.sources.setItem(row, 0, _item(Path(str(src["source"])).name, str(src["source"])))
            self.sources.setItem(row, 1, _item(src["shape"], window_text(src.get("reason") or "")))
            self.sources.setItem(row, 2, _item(f"{src['records']:,}", right=True))
            used = src.get("used_in_mix")
            self.sources.setItem(row, 3, _item("" if used is None else f"{used:,}", right=True))
            for col in (4, 5):
                self.sources.setItem(row, col, _item(""))
        self.sources.setFixedHeight(self.sources.verticalHeader().defaultSectionSize() * (len(sources) + 1)
                                    + 2 * self.sources.frameWidth() + 2)
        self.columns.setText("")
        self._plain_lines = []
        for line in value.get("lines") or []:
            lines.append(html.escape(window_text(line)))
        self.summary.setText("<br>".join(lines))
        self._fill_problems([], 0)
        self.hist_slot.hide()   # TRL tokenizes the pairs itself: no SFT token lengths to show

    def columns_line(self, row: int) -> str:
        """The plain text of source ``row``'s columns line (tests)."""
        return self._plain_lines[row] if row < len(self._plain_lines) else ""

    @staticmethod
    def _columns_text(src: dict) -> str:
        if not src:
            return ""
        used = ", ".join(src.get("columns_used") or []) or "(none)"
        ignored = src.get("columns_ignored") or {}
        extra = src.get("extra_keys") or {}
        if isinstance(ignored, list):
            ignored = dict.fromkeys(ignored)
        ignored = {**ignored, **{k: v for k, v in extra.items() if k not in ignored}}
        fmt = src.get("format") or "the chosen"
        text = f"used: {used}"
        if ignored:
            parts = [k + (f" ({v:,} records)" if isinstance(v, int) else "") for k, v in ignored.items()]
            text += (f"; ignored: {', '.join(parts)} — not read by the {fmt} format "
                     f"(map them in {control_name('data.columns')} to use them)")
        else:
            text += "; nothing ignored"
        return text

    def _fill_summary(self, value: dict) -> None:
        r = value.get("report")
        lines = []
        if r:
            c, L, t = r["counts"], r.get("lengths") or {}, r.get("tokens") or {}
            lines.append(f"<b>{c['train_examples']:,}</b> training and {c['eval_examples']:,} evaluation examples "
                         f"from {c['records']:,} records; skipped {c['skipped']:,}, truncated {c['truncated']:,}, "
                         f"dropped {c['dropped_long'] + c['dropped_untrained']:,}"
                         + (f", not trained (label false) {c['filtered']:,}" if c.get("filtered") else "")
                         + (f"; {c['chunks']:,} extra windows from chunked texts" if c.get("chunks") else "") + ".")
            if r.get("validation") and r["validation"] != "none":   # which split or file is held out
                lines.append("Evaluation: " + html.escape(window_text(r["validation"])) + ".")
            if L.get("counts"):
                lines.append(f"Tokens per record: median {L['p50']}, 99th percentile {L['p99']}, longest {L['max']}; "
                             f"{L['over_limit']:,} over the max length of {L['limit']}.")
            if t.get("total"):
                lines.append(f"{100 * t['trained_share']:.1f}% of the {t['total']:,} training tokens carry loss.")
            roles, turns = r.get("roles") or {}, r.get("turns") or {}
            if any(roles.values()):
                lines.append("Turns: " + ", ".join(f"{k} {n:,}" for k, n in roles.items() if n)
                             + (f" (per example {turns['min']}–{turns['max']}, mean {turns['mean']:.1f})"
                                if turns else "") + ".")
            for issue in (r.get("issues") or {}).values():
                if issue.get("count"):
                    first = ", ".join(_where(x) for x in issue["rows"][:3])
                    lines.append(f"{issue['title'].capitalize()}: {issue['count']:,} (e.g. {html.escape(first)}).")
            d = r.get("duplicates") or {}
            if d.get("rows"):
                first = ", ".join(_where(x) for x in (d.get("groups") or [[]])[0][:3])
                lines.append(f"Exact duplicates: {d['rows']:,} (e.g. {html.escape(first)}).")
            if r.get("template"):
                lines.append("Chat template: " + html.escape("; ".join(r["template"])) + ".")
        else:
            s = value.get("total") or {}
            if not s:
                return
            n_src = len(value.get("names") or [])
            head = "So far" if not s.get("done") else "All sources"
            lines.append(f"{head}{f' ({n_src} sources)' if n_src > 1 else ''}: <b>{s['records']:,}</b> records read, "
                         f"{s['examples']:,} trainable; skipped {s['skipped']:,}, truncated {s['truncated']:,}, "
                         f"dropped {s['dropped']:,}" + (f", not trained (label false) {s['filtered']:,}"
                                                        if s.get("filtered") else "") + ".")
            if s.get("tokens"):
                lines.append(f"{100 * s['trained'] / s['tokens']:.1f}% of {s['tokens']:,} tokens carry loss.")
            if s.get("duplicates"):
                lines.append(f"Exact duplicates: {s['duplicates']:,}.")
            titles = {"empty_turn": "empty or whitespace-only turns", "no_answer": "prompts without an answer",
                      "placeholder": "template placeholders such as {{name}}"}
            for code, n in (s.get("issues") or {}).items():
                if n:
                    lines.append(f"{titles.get(code, code).capitalize()}: {n:,}.")
        self.summary.setText("<br>".join(lines))

    def _fill_histogram(self, lengths: dict) -> None:
        """Bars of ``lengths`` ({edges, counts}: the report's bins, or the statistics' fixed bins
        whose last count — one more than the bins — is "longer than 2 × max_length")."""
        edges, counts = list(lengths.get("edges") or []), list(lengths.get("counts") or [])
        if not counts:
            return
        self.hist_counts = counts
        if self.plot is None:
            import pyqtgraph as pg

            from studio import theme
            from studio.plots import ThemedPlot

            self.plot = ThemedPlot("Tokens per record, every source")
            self.plot.setLabel("bottom", "tokens")
            self.plot.setLabel("left", "records")
            self.plot.setMouseEnabled(x=False, y=False)
            self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush=theme.SERIES["hist"], pen=None)
            self.plot.addItem(self.bars)
            self.limit_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(theme.SERIES["limit"], width=2,
                                                                                      style=Qt.PenStyle.DashLine))
            self.plot.addItem(self.limit_line)
            self.hist_slot.layout().addWidget(self.plot)
        if len(counts) == len(edges):   # the statistics' overflow bin: drawn one bin wide past the end
            step = edges[1] - edges[0] if len(edges) > 1 else 1.0
            edges = edges + [edges[-1] + step]
        self.bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        limit = lengths.get("limit") or (self.result.get("total") or {}).get("limit") or self._values.get("max_length")
        if limit:
            self.limit_line.setValue(float(limit))
        self.hist_slot.show()

    def _fill_problems(self, problems: list, total: int | None) -> None:
        total = len(problems) if total is None else total
        shown = problems[:SHOWN_PROBLEMS]
        more = f" (the first {len(shown):,} of {total:,})" if total > len(shown) else ""
        self.problems_head.setText(f"Not trained as written: {total:,}{more}" if total
                                   else "Not trained as written: none")
        self.problems.setRowCount(len(shown))
        for row, p in enumerate(shown):
            status = p.get("status", "")
            self.problems.setItem(row, 0, _item(_where(p), str(p.get("file") or p.get("where") or "")))
            self.problems.setItem(row, 1, _item(STATUS_WORDS.get(status, status)))
            self.problems.setItem(row, 2, _item(window_text(str(p.get("reason") or ""))))

    def _show_fixes(self) -> None:
        self.fixes = suggest_fixes(self.result, self._values, self._task) if self.result else []
        while self.fix_lay.count():
            item = self.fix_lay.takeAt(0)
            w = item.widget()
            if w is not None:
                w.setParent(None)  # findChild must not find the old buttons
                w.deleteLater()
        for fix in self.fixes:
            row = QWidget()
            rl = QHBoxLayout(row)
            rl.setContentsMargins(0, 0, 0, 0)
            btn = QPushButton(fix.label)
            btn.setObjectName(f"fix:{fix.path}")
            btn.setToolTip(fix.why)
            btn.clicked.connect(lambda _=False, f=fix: self.sig_fix.emit(f.path, f.value))
            rl.addWidget(btn, 0, Qt.AlignmentFlag.AlignTop)
            why = QLabel(html.escape(fix.why))
            why.setWordWrap(True)
            rl.addWidget(why, 1)
            self.fix_lay.addWidget(row)
        self.fix_box.setVisible(bool(self.fixes))

    def fix_button(self, path: str) -> QPushButton | None:
        """The button of the fix for ``path`` (tests, the walk)."""
        return self.fix_box.findChild(QPushButton, f"fix:{path}")


# ---- hooks for the Data panel ----------------------------------------------------------------------

def report_tabs(examples: QWidget, panel) -> tuple[DataReportView, QWidget]:
    """The Data panel's right side: its examples table and the report as two tabs."""
    from PySide6.QtWidgets import QTabWidget

    from studio.widgets import scroll

    view = DataReportView()
    view.sig_fix.connect(panel.apply_fix)
    view.job.sig_result.connect(lambda value: gate_large_file(panel, value))
    tabs = QTabWidget()
    tabs.setObjectName("data-tabs")
    tabs.addTab(examples, "Examples")
    tabs.addTab(scroll(view), "Report")
    view.tabs = tabs
    return view, tabs


def apply_fix(panel, path: str, value) -> None:
    """Set the control for ``path`` (a fix's run-file key) to ``value``, show it and give it the
    focus; the config follows through the control's own change signal. The Data panel's own
    controls are set here; another panel's (``train.task``) through the window's
    ``Studio.set_control``, which the panel holds as ``set_elsewhere``."""
    section, name = path.split(".", 1)
    if section != "data":  # another panel's control (train.task): the window sets it (studio/controls.py)
        panel.set_elsewhere(path, value)
        return
    if name == "columns":
        panel.mapping.set_file(panel.path.text(), mapping=dict(value))
        panel.mapping.sig_changed.emit()
        widget = panel.mapping
    else:
        editor = panel.form.editors[name]
        editor.set_value(value)
        if panel.form.advanced_box.isAncestorOf(editor):
            panel.form.set_advanced_visible(True)
        widget = editor.widget
    widget.setFocus()
    panel.report.set_values(panel.values()[0])


def bad_records_message(value: dict) -> str:
    """Why training would stop on this data as configured ('' when it would not): records that
    cannot be read, with skipping off (the engine stops at the first; the window names them all)."""
    total = value.get("statistics") or value.get("total") or {}
    report = value.get("report") or {}
    skipped = (report.get("counts") or {}).get("skipped", total.get("skipped", 0)) or 0
    if not skipped:
        return ""
    problems = [p for p in (report.get("problems") or total.get("problems") or []) if p.get("status") == "skipped"]
    first = f" (first: {_where(problems[0])}: {window_text(str(problems[0].get('reason') or ''))})" if problems else ""
    return (f"{_n(skipped, 'record')} cannot be read as written{first}: training would stop at the first. "
            f"Fix them, or tick {control_name('data.skip_bad_lines')} (the Report tab lists them all).")


def gate_large_file(panel, value: dict) -> None:
    """A large file is previewed from its first records only, so the preview cannot see a bad
    record further on; the report, which read every record, gates Start instead (small files:
    the whole-file preview already does, with the engine's own message)."""
    if not getattr(panel.preview, "partial", False) or value.get("stage") not in ("statistics", "report"):
        return
    vals = panel.values()[0]
    message = "" if vals.get("skip_bad_lines") else bad_records_message(value)
    panel._set_rejection("data.skip_bad_lines" if message else None, message)
