"""The studio's few message boxes (help, about, the close-during-run question)."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMessageBox, QWidget


def show_shortcuts(parent: QWidget, actions) -> QMessageBox:
    rows = [(a.text(), a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)) for a in actions]
    text = "".join(f"<tr><td>{n}</td><td>&nbsp;&nbsp;<b>{k}</b></td></tr>" for n, k in rows)
    box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", f"<table>{text}</table>",
                      QMessageBox.StandardButton.Ok, parent)
    box.open()
    return box


def show_about(parent: QWidget) -> None:
    QMessageBox.about(parent, "About PEFT Studio", "<b>PEFT Studio</b><br>Parameter-efficient fine-tuning "
                      "on your own machine: pick a model, data and method, watch it train, export the "
                      "adapter.<br><br>The same run file drives <code>peft-studio train run.yaml</code>.")


def ask_close_during_run(parent: QWidget) -> str:
    """'stop', 'keep' or 'cancel'."""
    box = QMessageBox(QMessageBox.Icon.Question, "A run is in progress",
                      "Training is still running. What should happen to it?", parent=parent)
    box.setInformativeText("Stop and save: the adapter is saved at the end of the current step.\n"
                           "Keep running: the run continues; the studio re-attaches when reopened.")
    stop = box.addButton("Stop and save", QMessageBox.ButtonRole.AcceptRole)
    keep = box.addButton("Keep running", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(stop)
    box.exec()
    clicked = box.clickedButton()
    return "stop" if clicked is stop else "keep" if clicked is keep else "cancel"
