"""The Export tab reads the engine's export-format registry (issue 17, studio): every format and
type, each with its size before export, K-quants only where llama-cpp-python is installed (an
install hint where not), Ollama and GGUF LoRA exports with the verification sentence, Open folder."""

from __future__ import annotations

import pytest

from engine.export.formats import FORMATS, estimate_sizes
from engine.export.testing import make_adapter_run
from studio.export_jobs import export_choices
from studio.panels.export import ExportPanel
from studio.task_state import TaskState

TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("expfmt")
    return {name: make_adapter_run(root / name, tiny_model_dir, method, seed=1)
            for name, method in (("lora", "lora"), ("pt", "prompt_tuning"))}


@pytest.fixture
def panel(qtbot):
    w = ExportPanel()
    qtbot.addWidget(w)
    yield w
    w.shutdown()


def _open(panel, qtbot, run):
    with qtbot.waitSignal(panel.sig_choices, timeout=TIMEOUT_MS) as blocker:
        panel.set_run_dir(str(run))
    return blocker.args[0]


def _mode(panel, key):
    panel.mode.setCurrentIndex(panel.mode.findData(key))


def _llama_cpp() -> bool:
    from engine.export import gguf_quant

    return gguf_quant.llama_cpp_available()


def test_formats_types_and_sizes_come_from_the_registry(panel, runs, qtbot):
    assert [panel.mode.itemData(i) for i in range(panel.mode.count())] == [*FORMATS, "weighted"]
    for name, fmt in FORMATS.items():
        page = panel.format_pages[name]
        got = [page.option.itemText(i) for i in range(page.option.count())] if page.option else []
        assert got == list(fmt.options)
        if fmt.default_option:
            assert page.current_option() == fmt.default_option
    choices = _open(panel, qtbot, runs["lora"])
    has_llama = _llama_cpp()
    assert choices["llama_cpp"] is has_llama   # the [llama] extra: installed here, not in CI
    # Every size the engine estimates, shown before anything is written.
    expected = {(e.format, e.option): e.text() for e in estimate_sizes(runs["lora"], "final")}
    for name, page in panel.format_pages.items():
        shown = {(name, page.sizes.item(r, 0).text() if page.option else None): page.sizes.item(r, 1).text()
                 for r in range(page.sizes.rowCount())}
        assert shown == {k: v for k, v in expected.items() if k[0] == name}, name
    gguf = panel.format_pages["gguf"]
    gguf.option.setCurrentText("q4_k_m")
    assert gguf.size.text() == expected[("gguf", "q4_k_m")] and gguf.size.text().startswith("about ")
    model = gguf.option.model()
    if has_llama:  # without it, test_k_quants_without_llama_cpp_show_the_install_hint checks the page
        assert gguf.hint.isHidden()
        assert all(model.item(i).isEnabled() for i in range(gguf.option.count()))
        _mode(panel, "gguf")
        assert panel.out.text().endswith("exports/gguf-q4_k_m")   # the folder name follows the type
    # The checkpoint menu offers the base model too (what a GGUF LoRA adapter is applied to).
    assert [panel.checkpoint.itemText(i) for i in range(panel.checkpoint.count())][-1] == "base"


def test_k_quants_without_llama_cpp_show_the_install_hint(panel, runs, qtbot, monkeypatch):
    """The job's real answer on a machine without llama-cpp-python (its availability check patched)."""
    import engine.export.gguf_quant as gq

    _open(panel, qtbot, runs["lora"])
    monkeypatch.setattr(gq, "llama_cpp_available", lambda: False)
    value = export_choices(TaskState(), str(runs["lora"]), "final")
    assert value["llama_cpp"] is False
    panel._on_choices(value)
    for name in ("gguf", "ollama"):
        page = panel.format_pages[name]
        model = page.option.model()
        enabled = {page.option.itemText(i): model.item(i).isEnabled() for i in range(page.option.count())}
        assert enabled["q4_k_m"] is False and enabled["q8_0"] is True and enabled["f16"] is True
        assert not page.hint.isHidden() and "pip install 'peft-studio[llama]'" in page.hint.text()
        assert "q4_k_m" not in page.current_option()   # a type that cannot be made is never left chosen
        assert "pip install" in model.item(page.option.findText("q6_k")).toolTip()


def test_ollama_export_shows_the_verification_and_opens_the_folder(panel, runs, qtbot, tmp_path, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    _open(panel, qtbot, runs["lora"])
    _mode(panel, "ollama")
    page = panel.format_pages["ollama"]
    page.option.setCurrentText("q8_0")
    assert panel.out.text().endswith("exports/ollama-q8_0")
    panel.out.setText(str(tmp_path / "ollama"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=TIMEOUT_MS) as blocker:
        panel.start_export()
    result = blocker.args[0]
    assert (tmp_path / "ollama" / "Modelfile").exists() and result.details["gguf_file"].endswith(".gguf")
    sentence = result.details["agreement"]["sentence"]
    # Checked in llama.cpp itself where the [llama] extra is installed, else by transformers' reader.
    assert sentence.startswith("llama.cpp" if _llama_cpp() else "transformers' GGUF reader")
    assert sentence in panel.status.text()
    assert "ollama create" in panel.status.text()
    assert not panel.open_btn.isHidden() and panel.open_folder() and opened == [str(tmp_path / "ollama")]


def test_gguf_lora_export_and_why_a_prompt_tuning_run_cannot(panel, runs, qtbot, tmp_path):
    _open(panel, qtbot, runs["lora"])
    _mode(panel, "gguf-lora")
    page = panel.format_pages["gguf-lora"]
    assert page.note.isHidden()
    panel.out.setText(str(tmp_path / "lora"))
    with qtbot.waitSignal(panel.sig_export_finished, timeout=TIMEOUT_MS) as blocker:
        panel.start_export()
    assert blocker.args[0].kind == "gguf-lora"
    assert list((tmp_path / "lora").glob("*.lora.f32.gguf")) and "GGUF LoRA adapter written to" in panel.status.text()
    _open(panel, qtbot, runs["pt"])
    assert not page.note.isHidden() and page.note.text()
    assert not panel.format_pages["merged"].note.isHidden()
