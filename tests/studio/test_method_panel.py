"""The method panel: each method's target-module chooser offers the right kind of module, and
its caveats (a missing package, no merging) are shown before the user starts."""

from __future__ import annotations

import pytest

INFO = {  # what inspect_model returns for a Llama-style model (the parts the panel reads)
    "linear_module_names": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "default_targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "target_candidates": {
        "linear": {"names": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   "auto": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "norm": {"names": ["input_layernorm", "post_attention_layernorm", "norm"],
                 "auto": ["input_layernorm", "post_attention_layernorm", "norm"]},
        "embedding": {"names": ["embed_tokens"], "auto": ["embed_tokens"]},
        "blocks": {"names": [], "auto": []},
    },
    "unavailable_methods": {"bitfit": "this model (llama) has no bias parameters; choose another method"},
}


@pytest.fixture
def panel(qtbot):
    from studio.panels.method import MethodPanel

    p = MethodPanel()
    qtbot.addWidget(p)
    p.show()
    p.set_model_info(INFO)
    return p


def choose(panel, name):
    panel.combo.setCurrentIndex(panel.combo.findData(name))
    assert panel.current == name


@pytest.mark.parametrize("method,kind,offered", [
    ("lora", "linear", INFO["linear_module_names"]),
    ("ln_tuning", "norm", ["input_layernorm", "post_attention_layernorm", "norm"]),
    ("trainable_tokens", "embedding", ["embed_tokens"]),
])
def test_target_chooser_offers_the_modules_the_method_adapts(panel, method, kind, offered):
    choose(panel, "lora")
    panel.targets.radios["all-linear"].setChecked(True)  # a leftover that other kinds cannot take
    choose(panel, method)
    t = panel.targets
    assert t.kind == kind
    assert sorted(t.checks) == sorted(offered)
    assert t.radios["all-linear"].isHidden() == (kind != "linear")
    if kind != "linear":
        assert t.value() == "auto", "all-linear must not survive a switch to a method that cannot use it"
    t.radios["list"].setChecked(True)
    assert set(t.value()) <= set(offered) and t.value()
    vals, errors = panel.values()
    assert not errors and vals["target_modules"] == t.value()


def test_shadow_wraps_decoder_blocks_and_offers_no_linear_list(panel):
    choose(panel, "shadow")
    t = panel.targets
    assert t.radios["list"].isHidden() and t.radios["all-linear"].isHidden()
    assert t.value() == "auto" and not t.checks
    assert "decoder layer" in t.note.text()


def test_caveats_are_shown_beside_the_method(panel):
    choose(panel, "bottleneck")
    assert "Cannot be merged" in panel.caveat.text() and "nonlinearity" in panel.caveat.text()
    choose(panel, "adamss")
    assert "scikit-learn" in panel.caveat.text()
    choose(panel, "full")
    assert "complete model" in panel.caveat.text()
    choose(panel, "lora")
    assert panel.caveat.text() == ""


def test_methods_the_model_cannot_take_are_marked_with_the_reason(panel):
    i = panel.combo.findData("bitfit")
    assert "not for this model" in panel.combo.itemText(i)
    assert "no bias parameters" in panel.combo.itemData(i, 3)
    assert "not for this model" not in panel.combo.itemText(panel.combo.findData("lora"))
    choose(panel, "bitfit")
    assert "no bias parameters" in panel.caveat.text()
    panel.set_model_info({**INFO, "unavailable_methods": {}})  # another model, with biases
    assert panel.combo.itemText(i) == "BitFit" and "no bias" not in panel.caveat.text()


@pytest.mark.parametrize("method", ["full", "selective", "bottleneck"])
def test_description_reads_as_one_paragraph(panel, method):
    """A docstring wrapped over two lines must not show its line break and indentation
    ("…optimizer and\\n    gradient checkpointing") in the label under the method list."""
    choose(panel, method)
    text = panel.description.text()
    assert text and "\n" not in text and "  " not in text, repr(text)


def test_start_from_adapter_is_a_folder_field_with_its_note_and_survives_a_method_switch(panel, monkeypatch):
    """method.from_adapter comes from the field metadata: a path with a folder picker; naming an
    adapter shows that its settings will be used; switching the method keeps it."""
    from PySide6.QtWidgets import QFileDialog, QToolButton

    from engine.config import RunConfig

    editor = panel.form.editors["from_adapter"]
    assert editor.kind == "path" and editor.widget.objectName() == "field:method.from_adapter"
    assert not panel.adapter_note.isVisible()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **kw: "/runs/sft")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **kw: (_ for _ in ()).throw(AssertionError("a file picker for a folder")))
    editor.findChild(QToolButton).click()
    assert panel.values()[0]["from_adapter"] == "/runs/sft"
    assert panel.adapter_note.isVisible()
    choose(panel, "dora")
    assert panel.values()[0]["from_adapter"] == "/runs/sft" and panel.adapter_note.isVisible()
    panel.set_values(RunConfig().method)
    assert panel.values()[0]["from_adapter"] is None and not panel.adapter_note.isVisible()


def test_start_line_says_which_adapter_the_run_continues():
    from engine.config import RunConfig
    from studio.summary import what_will_train

    cfg = RunConfig.from_dict({"method": {"name": "lora", "from_adapter": "/home/me/runs/sft-demo"}})
    assert "LoRA (continuing the adapter in sft-demo)" in what_will_train(cfg)
    assert "continuing" not in what_will_train(RunConfig())
