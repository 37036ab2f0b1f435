"""Samples: what the model answers at each evaluation, prompt and reference beside it.

Every ``eval`` event of a run carries ``samples`` (engine.evals.samples: the same prompts at
each step, answered greedily). The view is a grid: one column per prompt (its prompt and
reference on top), one row per evaluation step, the step's task metrics at the left. Words of an
answer that were not in the same prompt's answer at the previous step are highlighted, so a
style or a fact appearing during training stands out.
"""

from __future__ import annotations

import difflib
import html

from PySide6.QtWidgets import QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from studio.panels.base import Area, PanelDefaults, Studio
from studio.widgets import muted

HIGHLIGHT = "rgba(240, 190, 40, 0.45)"   # changed words: a translucent amber that reads on light and dark
_SKIP = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch"}


def changed_words(before: str | None, after: str) -> list[tuple[str, bool]]:
    """``after`` as (word, changed) pairs: changed when the word is new or replaced relative to
    ``before`` (difflib on whitespace-separated words); nothing is changed when there is no
    ``before`` (the first step)."""
    words = after.split()
    if before is None:
        return [(w, False) for w in words]
    out = [(w, True) for w in words]
    for block in difflib.SequenceMatcher(a=before.split(), b=words, autojunk=False).get_matching_blocks():
        for j in range(block.b, block.b + block.size):
            out[j] = (words[j], False)
    return out


def _answer_html(before: str | None, after: str) -> str:
    parts = []
    for word, changed in changed_words(before, after):
        w = html.escape(word)
        parts.append(f'<span style="background:{HIGHLIGHT}">{w}</span>' if changed else w)
    return " ".join(parts) or "<i>(empty answer)</i>"


def _metric_text(metrics: dict) -> str:
    rows = []
    for k, v in metrics.items():
        if k in _SKIP or not k.startswith("eval_") or not isinstance(v, (int, float)):
            continue
        rows.append(f"{html.escape(k[5:].replace('_', ' '))} {v:.2f}")
    return "<br>".join(rows)


def samples_html(evals: list[dict]) -> str:
    """The grid for a run's eval events (those with samples), oldest step first."""
    evals = [e for e in evals if e.get("samples")]
    if not evals:
        return ""
    prompts = [s.get("prompt", "") for s in evals[0]["samples"]]
    refs = [s.get("reference", "") for s in evals[0]["samples"]]
    head = "".join(f'<th align="left" valign="top"><b>{html.escape(p)}</b></th>' for p in prompts)
    ref_row = "".join(f'<td valign="top"><i>{html.escape(r) or "—"}</i></td>' for r in refs)
    rows = [f'<tr><th align="left">prompt</th>{head}</tr>', f'<tr><td><i>reference</i></td>{ref_row}</tr>']
    previous: list[str | None] = [None] * len(prompts)
    for ev in evals:
        answers = {s.get("prompt", ""): s.get("answer", "") for s in ev["samples"]}
        cells = []
        for i, p in enumerate(prompts):
            a = answers.get(p, "")
            cells.append(f'<td valign="top">{_answer_html(previous[i], a)}</td>')
            previous[i] = a
        label = f"<b>step {ev.get('step')}</b><br><small>{_metric_text(ev.get('metrics') or {})}</small>"
        rows.append(f'<tr><td valign="top" nowrap>{label}</td>{"".join(cells)}</tr>')
    return ('<table width="100%" cellspacing="0" cellpadding="6" border="1" style="border-collapse:collapse">'
            + "".join(rows) + "</table>")


class SamplesPanel(QWidget, PanelDefaults):
    key, title, area = "samples", "Samples", Area.CENTRAL
    scrollable = False  # the browser scrolls itself

    @classmethod
    def create(cls, studio: Studio) -> SamplesPanel:
        panel = cls()
        studio.runs.sig_run_dir.connect(lambda _d: panel.clear())
        studio.runs.sig_event.connect(panel.on_event)
        return panel

    def __init__(self, parent=None):
        super().__init__(parent)
        self.evals: list[dict] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        self.summary = QLabel("")
        self.summary.setObjectName("samples-summary")
        top.addWidget(self.summary, 1)
        lay.addLayout(top)
        lay.addWidget(muted("The same prompts answered greedily at every evaluation (eval.prompts, or the first "
                            "held-out examples). Highlighted: words that changed since the step before."))
        self.view = QTextBrowser()
        self.view.setObjectName("samples-view")
        self.view.setOpenLinks(False)
        lay.addWidget(self.view, 1)
        self.empty = muted("No samples yet: they appear at the run's first evaluation (set “Eval every (steps)” "
                           "and keep a validation split to see them during training).")
        lay.addWidget(self.empty)
        self._render()

    def clear(self) -> None:
        self.evals = []
        self._render()

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "started" and not ev.get("resumed_from_step"):
            self.evals = []
            self._render()
        elif kind == "eval" and ev.get("samples"):
            # one row per step: a re-evaluation of the same step replaces the row
            self.evals = [e for e in self.evals if e.get("step") != ev.get("step")] + [ev]
            self._render()

    def _render(self) -> None:
        has = bool(self.evals)
        self.empty.setVisible(not has)
        self.view.setVisible(has)
        if not has:
            self.summary.setText("")
            self.view.clear()
            return
        last = self.evals[-1]
        n = len(last.get("samples") or [])
        self.summary.setText(f"{n} prompt{'s' if n != 1 else ''} × {len(self.evals)} evaluation"
                             f"{'s' if len(self.evals) != 1 else ''} (last: step {last.get('step')})")
        bar = self.view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.view.setHtml(samples_html(self.evals))
        if at_end:  # follow the newest step unless the user scrolled up to read
            bar.setValue(bar.maximum())
