"""The playground tab: tokens stream into both panes from the playground helper process while the
UI keeps running; the base pane shows the base model; bad folders are plain messages."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer

from engine.export.testing import make_adapter_run
from studio.panels.playground import PlaygroundPanel


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    return make_adapter_run(tmp_path_factory.mktemp("pgp") / "run", tiny_model_dir, "lora", seed=5,
                            checkpoints=(2,), scale=0.5)


@pytest.fixture
def panel(qtbot):
    w = PlaygroundPanel()
    qtbot.addWidget(w)
    yield w
    w.shutdown()


def test_generates_side_by_side_without_blocking(panel, run_dir, qtbot, tiny_model_dir):
    from engine.inference import GenerationSettings
    from engine.playground import BASE, Playground

    panel.set_run_dir(str(run_dir))
    assert [panel.source_combos[0].itemText(i) for i in range(panel.source_combos[0].count())] == \
        ["base", "final", "checkpoint-2"]
    assert [c.currentText() for c in panel.source_combos] == ["base", "final"]
    assert panel.generate_btn.isEnabled()
    panel.prompt.setPlainText("What is two plus two?")
    panel.max_new_tokens.setValue(12)

    pieces = []
    panel.sig_piece.connect(lambda side, text: pieces.append(side))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    with qtbot.waitSignal(panel.sig_generation_finished, timeout=120_000):
        panel.generate()
        assert not panel.generate_btn.isEnabled() and panel.stop_btn.isEnabled()
    timer.stop()
    assert panel.error.isHidden(), panel.error.text()
    assert len(ticks) > 5, "the UI thread kept running while the model generated"
    assert pieces.count(1) > 1, "the tuned side streamed several pieces"
    assert panel.generate_btn.isEnabled() and not panel.stop_btn.isEnabled()

    # The left pane is the base model, the right one the tuned adapter, as the engine says.
    settings = GenerationSettings(max_new_tokens=12, temperature=0.0, top_p=0.9, seed=0)
    msgs = [{"role": "user", "content": "What is two plus two?"}]
    pg = Playground(run_dir).load()
    base_text = pg.generate(BASE, msgs, settings) or "(no text: the model ended its answer at once)"
    assert panel.outputs[0].toPlainText().strip() == base_text
    assert panel.outputs[1].toPlainText().strip() == pg.generate("final", msgs, settings)


def test_checkpoint_against_final_and_stop(panel, run_dir, qtbot):
    panel.set_run_dir(run_dir)
    panel.source_combos[0].setCurrentText("checkpoint-2")
    panel.prompt.setPlainText("Tell me a long story")
    panel.max_new_tokens.setValue(2000)
    with qtbot.waitSignal(panel.sig_generation_finished, timeout=120_000):
        panel.generate()
        qtbot.waitUntil(lambda: panel.outputs[0].toPlainText() != "", timeout=60_000)
        panel.stop()
    assert panel.status.text() == "Stopped."
    assert panel.outputs[1].toPlainText() == ""  # stopped before the second side started


def test_the_same_run_announced_again_does_not_stop_a_generation(panel, run_dir, qtbot):
    """The run pickers re-announce the shown run as they refresh (and a finished run's adapter
    event does too): a generation the user started runs to its end unless what it uses changed."""
    panel.set_run_dir(str(run_dir))
    panel.prompt.setPlainText("What is two plus two?")
    panel.max_new_tokens.setValue(8)
    with qtbot.waitSignal(panel.sig_generation_finished, timeout=120_000):
        panel.generate()
        panel.set_run_dir(str(run_dir))  # the same run, the same adapters on disk
        panel.set_adapter(str(run_dir / "adapter"))
    assert panel.status.text() == "Done." and panel.error.isHidden(), panel.error.text()
    assert all(o.toPlainText() for o in panel.outputs)


def test_bad_folder_is_a_plain_message(panel, tmp_path):
    panel.set_run_dir(str(tmp_path))
    assert not panel.error.isHidden()
    assert "not a run folder" in panel.error.text()
    assert not panel.generate_btn.isEnabled()


def test_empty_prompt_asks_for_one(panel, run_dir):
    panel.set_run_dir(run_dir)
    panel.generate()
    assert "Type a prompt" in panel.error.text() and not panel.busy


def test_new_adapter_on_disk_is_picked_up(panel, tiny_model_dir, tmp_path):
    run = make_adapter_run(tmp_path / "r", tiny_model_dir, "lora", final=False, checkpoints=(2,))
    panel.set_run_dir(run)
    assert [c.currentText() for c in panel.source_combos] == ["base", "checkpoint-2"]
    panel._loaded_key = [str(run), panel._signature]  # stands for a model the helper has loaded
    panel.set_run_dir(run)  # nothing changed on disk: keep it
    assert panel._loaded_key is not None
    make_adapter_run(tmp_path / "r", tiny_model_dir, "lora", checkpoints=(2,))  # the run "finished"
    panel.set_adapter(str(run / "adapter"))
    assert panel._loaded_key is None
    assert panel.source_combos[0].findText("final") >= 0
