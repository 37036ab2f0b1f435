"""Resume that cannot hurt (the `resume-safety` case, tests/data/cases/resume-safety).

A finished run says "already complete (4/4 steps)" and changes nothing; a changed method,
target-module or quantization setting is refused before weights load, naming the field and both
values, with run.yaml byte-identical afterwards; the settings that may change (docs/resume.md)
do, and take effect.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from engine.events import ListSink
from engine.training import train
from engine.training.resume import MAY_CHANGE
from tests.engine.cases import case_config

REPO = Path(__file__).resolve().parents[2]


def _snapshot(run_dir: Path) -> dict[str, str]:
    """Every file of the run folder by its bytes' hash (and the index row)."""
    out = {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(run_dir.rglob("*")) if p.is_file()}
    return out


def _index_rows():
    import sqlite3

    from engine.paths import run_index_path

    if not run_index_path().exists():
        return []
    with sqlite3.connect(run_index_path()) as db:
        return [tuple(r) for r in db.execute("SELECT * FROM runs ORDER BY run_dir")]


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """The case run to its end: 4 steps, a checkpoint every 2."""
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("PEFT_STUDIO_HOME")
    os.environ["PEFT_STUDIO_HOME"] = str(home)
    tmp = tmp_path_factory.mktemp("resume")
    cfg = case_config("resume-safety", tmp, tiny_model_dir)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    if old is None:
        os.environ.pop("PEFT_STUDIO_HOME")
    else:
        os.environ["PEFT_STUDIO_HOME"] = old
    assert result.status == "finished", result.error
    return cfg, Path(cfg.output_dir), home


@pytest.fixture()
def no_weights(monkeypatch):
    """Loading weights fails loudly: what is refused must be refused before this."""
    import engine.training.build

    def refuse(*a, **kw):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(engine.training.build, "load_model", refuse)


def _resume(cfg, **changes):
    import copy

    c = copy.deepcopy(cfg)
    c.train.resume_from = "latest"
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(c, section), name, value)
    sink = ListSink()
    return train(c, sinks=[sink]), sink


def test_a_finished_run_is_already_complete_and_nothing_changes(finished_run, no_weights, monkeypatch):
    cfg, run_dir, home = finished_run
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(home))
    before, rows = _snapshot(run_dir), _index_rows()
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir()
    result, sink = _resume(cfg)
    assert result.status == "complete"
    assert any("already complete (4/4 steps)" in e["message"] for e in sink.of("log"))
    assert not sink.of("failed") and not sink.of("started")
    # A terminal event for clients that wait for one (the studio), on the stream only.
    assert sink.of("finished")[0]["step"] == 4
    assert _snapshot(run_dir) == before and _index_rows() == rows


def test_a_finished_run_without_checkpoints_is_complete_too(tiny_model_dir, tmp_path, monkeypatch):
    """A run that saved only at its end has no checkpoint: its finished event says it is done."""
    import engine.training.build

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = case_config("resume-safety", tmp_path, tiny_model_dir)
    cfg.train.save_steps = 0
    cfg.train.max_steps = 2
    assert train(cfg).status == "finished"
    before = _snapshot(Path(cfg.output_dir))
    monkeypatch.setattr(engine.training.build, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    result, sink = _resume(cfg)
    assert result.status == "complete" and "already complete (2/2 steps)" in sink.of("log")[-1]["message"]
    assert _snapshot(Path(cfg.output_dir)) == before


@pytest.mark.parametrize("change,field,was,now", [
    ({"method__r": 16}, "method.r", "8", "16"),
    ({"method__target_modules": ["q_proj", "k_proj", "v_proj"]}, "method.target_modules", "['q_proj', 'v_proj']",
     "['q_proj', 'k_proj', 'v_proj']"),
    ({"model__quantization": "nf4"}, "model.quantization", "None", "'nf4'"),
    ({"train__batch_size": 4}, "train.batch_size", "2", "4"),
])
def test_a_changed_fixed_setting_is_refused_before_weights_load(finished_run, no_weights, monkeypatch, change,
                                                                 field, was, now):
    cfg, run_dir, home = finished_run
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(home))
    before, rows = _snapshot(run_dir), _index_rows()
    run_yaml = (run_dir / "run.yaml").read_bytes()
    result, sink = _resume(cfg, train__max_steps=6, **change)  # even when extending the run
    assert result.status == "failed" and result.user_error
    error = sink.of("failed")[0]["error"]
    assert error.startswith(f"{field}: was ") and was in error and now in error, error
    assert "traceback" not in sink.of("failed")[0]
    assert (run_dir / "run.yaml").read_bytes() == run_yaml
    assert _snapshot(run_dir) == before and _index_rows() == rows


def test_extending_a_run_with_a_new_learning_rate_continues_it(finished_run, monkeypatch, tmp_path):
    """max_steps and lr may change on resume: the run goes on from step 4 to 6, and the new peak
    learning rate is the one the schedule uses (the checkpoint's would otherwise win)."""
    import shutil

    cfg, run_dir, home = finished_run
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(home))
    copy_dir = tmp_path / "extended"
    shutil.copytree(run_dir, copy_dir)
    import copy

    c = copy.deepcopy(cfg)
    c.output_dir = str(copy_dir)
    result, sink = _resume(c, train__max_steps=6, train__lr=2e-3)
    assert result.status == "finished", result.error
    assert sink.of("started")[0]["resumed_from_step"] == 4
    steps = {e["step"]: e for e in sink.of("step")}
    assert sorted(steps) == [5, 6]
    # Linear decay over the new total of 6 steps: step k uses lr × (6 - (k - 1)) / 6.
    assert steps[5]["lr"] == pytest.approx(2e-3 * 2 / 6, rel=1e-6)
    assert steps[6]["lr"] == pytest.approx(2e-3 * 1 / 6, rel=1e-6)
    saved = (copy_dir / "run.yaml").read_text(encoding="utf-8")
    assert "max_steps: 6" in saved and "lr: 0.002" in saved  # the run file says what the run did


def test_the_settings_that_may_change_on_resume_are_documented():
    doc = (REPO / "docs" / "resume.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)?)` \|", doc, flags=re.M))
    assert listed == set(MAY_CHANGE)
