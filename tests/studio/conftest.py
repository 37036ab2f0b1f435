"""Studio fixtures: isolated settings, the fake engine, and a guard against leaked windows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Settings, the run index and app data go to a temp folder, never the user's."""
    from PySide6.QtCore import QSettings

    home = tmp_path / "home"
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(home / "studio"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "config"))
    yield home


@pytest.fixture(scope="session", autouse=True)
def _studio_exits_cleanly():
    """The test session is the app: at its end every helper process, command and worker thread is
    shut down and joined, as studio/app.py does before the interpreter exits (threads left running
    into interpreter teardown crashed CI: Qt objects touched by a daemon thread while Python exits)."""
    yield
    from studio import tasks
    from studio.supervisor import wait_orphans

    for sup in _reading_supervisors():
        sup.shutdown(kill=True)
    tasks.shutdown()
    wait_orphans()
    left = tasks.live_threads()
    assert not left, f"studio threads still alive after the app's shutdown: {left}"


def _reading_supervisors():
    from studio.supervisor import reading_supervisors

    return reading_supervisors()


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """After every test: no run supervisor is left reading (a window's close, or the test's own
    ``shutdown()``, ends it), no one-shot command runs on, and no helper process the test made
    itself has its reader thread alive. The lanes' helpers (studio/tasks.py) live as long as the
    app, here the session (_studio_exits_cleanly ends them). What is found is ended, then the
    test fails."""
    yield
    from studio import tasks
    from studio.supervisor import wait_orphans

    reading = _reading_supervisors()
    for sup in reading:
        sup.shutdown(kill=True)
    running = [c.argv[-1] for c in list(tasks._commands) if c.running and not c.cancelled]  # not asked to end
    tasks.close_commands()
    wait_orphans()
    left = tasks.live_threads(app_level=False)
    assert not reading, f"test left {len(reading)} run supervisor(s) reading; call shutdown() in teardown"
    assert not running, f"test left one-shot commands running: {running}"
    assert not left, f"test left studio threads alive (a helper it made must be shut down): {left}"


@pytest.fixture(autouse=True)
def no_leaked_widgets(request):
    """Fail a test that leaves a top-level window behind (napari's make_napari_viewer pattern)."""
    if "qapp" not in request.fixturenames and "qtbot" not in request.fixturenames:
        yield
        return
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    before = {id(w) for w in app.topLevelWidgets()}
    yield
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()
    leaked = [w for w in app.topLevelWidgets()
              if id(w) not in before and w.isVisible()]
    names = [f"{type(w).__name__}({w.windowTitle()!r})" for w in leaked]
    for w in leaked:
        w.close()
        w.deleteLater()
    assert not leaked, f"test leaked top-level widgets: {names}"


@pytest.fixture
def fake_engine(monkeypatch):
    """A command factory for RunSupervisor that runs tests/studio/fake_engine.py."""

    def command(run_yaml):
        return [sys.executable, str(FAKE_ENGINE), "train", run_yaml]

    def configure(**env):
        for k, v in env.items():
            monkeypatch.setenv(f"FAKE_{k.upper()}", str(v))
        return command

    return configure


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


TINY_ROWS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [
        ("What is the capital of France?", "Ahoy! The capital of France is Paris, arr!"),
        ("What is two plus two?", "Ahoy! Two plus two is four, matey!"),
        ("What colour is the sky?", "Ahoy! The sky is blue, arr!"),
        ("Translate hello to French.", "Ahoy! Hello means bonjour, arr!"),
        ("Tell me a story.", "Ahoy! Once upon a time a small model learned to speak like a pirate."),
        ("What is the capital of Italy?", "Ahoy! The capital of Italy is Rome, arr!"),
    ] * 4
]


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A small chat data set (messages format) the tiny model's tokenizer can render."""
    return write_jsonl(tmp_path / "data" / "train.jsonl", TINY_ROWS)


@pytest.fixture
def tiny_config(tiny_model_dir, tiny_data, tmp_path):
    """A RunConfig that trains the tiny model for a few CPU seconds."""

    def make(steps: int = 6, **train):
        from engine.config import RunConfig

        cfg = RunConfig()
        cfg.model.name_or_path = str(tiny_model_dir)
        cfg.data.path = str(tiny_data)
        cfg.data.max_length = 64
        cfg.data.validation_split = 0.0
        cfg.method.r = 4
        cfg.method.alpha = 8
        cfg.train.max_steps = steps
        cfg.train.batch_size = 2
        cfg.train.lr = 1e-3
        for k, v in train.items():
            setattr(cfg.train, k, v)
        cfg.output_dir = str(tmp_path / "runs" / "tiny")
        return cfg

    return make


@pytest.fixture
def make_window(qtbot):
    """MainWindow factory; every window is shut down (run killed) and deleted at teardown."""
    windows = []

    def make(**kw):
        from studio.main_window import MainWindow
        from studio.settings import Settings

        kw.setdefault("reattach", False)
        win = MainWindow(settings=Settings(), **kw)
        win.show()
        qtbot.waitExposed(win)
        windows.append(win)
        return win

    yield make
    for win in windows:
        try:
            win.shutdown()
        except RuntimeError:  # already deleted by the test
            continue
        win.deleteLater()
