"""Human output by default: `peft-studio train run.yaml > log.txt` writes readable lines; JSON
events only with `--format json`; a data error exits 2 with no traceback anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.console import event_line
from tests.engine.cases import case_folder

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "PEFT_STUDIO_HOME": str(tmp_path / "home"),
            "PEFT_STUDIO_CACHE": str(tmp_path / "cache")}


def test_redirected_output_is_readable_lines(tiny_model_dir, tmp_path):
    folder = case_folder("no-pad-token", tmp_path, tiny_model_dir, out=tmp_path / "run")
    log = tmp_path / "log.txt"
    with open(log, "w", encoding="utf-8") as fh:  # `peft-studio train run.yaml > log.txt`
        proc = subprocess.run([sys.executable, "-m", "engine", "train", "run.yaml", "--no-stdin"], cwd=folder,
                              stdout=fh, stderr=subprocess.PIPE, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = log.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert not any(line.lstrip().startswith("{") for line in lines), "JSON in the human log"
    assert "\r" not in text, "a progress bar in a file"
    assert any(line.startswith("Training lora on cpu: 1 steps") for line in lines)
    assert any(line.startswith("step 1/1  loss ") for line in lines)
    assert any(line.startswith("finished at step 1") and "Adapter: " in line for line in lines)


def test_json_only_when_asked(tiny_model_dir, tmp_path):
    folder = case_folder("no-pad-token", tmp_path, tiny_model_dir, out=tmp_path / "run")
    proc = subprocess.run([sys.executable, "-m", "engine", "train", "run.yaml", "--format", "json", "--no-stdin"],
                          cwd=folder, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert events and all("event" in e for e in events)  # stdout is nothing but events
    assert events[-1]["event"] == "finished"


def test_a_data_error_exits_2_without_a_traceback_anywhere(tiny_model_dir, tmp_path):
    folder = case_folder("no-pad-token", tmp_path, tiny_model_dir, out=tmp_path / "run")
    data = folder / "chat.jsonl"
    lines = data.read_text(encoding="utf-8").splitlines()
    lines[1] = '{"messages": [{"role": "user", "content": "torn'
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for fmt in ("human", "json"):
        proc = subprocess.run([sys.executable, "-m", "engine", "train", "run.yaml", "--format", fmt, "--no-stdin"],
                              cwd=folder, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
        assert proc.returncode == 2, (fmt, proc.stdout[-1500:], proc.stderr[-1500:])
        assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, fmt
        if fmt == "human":
            assert "error: " in proc.stdout and "chat.jsonl" in proc.stdout and "line 2" in proc.stdout
        else:
            failed = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()][-1]
            assert failed["event"] == "failed" and "traceback" not in failed and "line 2" in failed["error"]
    assert not (tmp_path / "run").exists(), "a run that never started leaves no folder"


def test_the_human_rendering_of_a_failure_never_shows_a_traceback():
    line = event_line({"event": "failed", "error": "RuntimeError: boom", "hint": "report it",
                       "traceback": "Traceback (most recent call last):\n  File x"})
    assert line == "error: RuntimeError: boom\nhint: report it"
