""""Where to run": train.distributed in the window, a real two-process CPU run started and
stopped from it (every rank ends, the adapter is saved), and the cluster script it writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.studio.test_run_e2e import RUN_TIMEOUT_MS


def test_where_to_run_round_trips_train_distributed(make_window, qtbot, tiny_config):
    win = make_window()
    cfg = tiny_config()
    cfg.train.distributed = RunConfig.from_dict({"train": {"distributed": {
        "strategy": "fsdp", "num_processes": 2, "fsdp": {"cpu_offload": True, "state_dict_type": "full"}}}}
    ).train.distributed
    win.config_model.set_config(cfg)
    where = win.panels["training"].where
    assert where.strategy.currentData() == "fsdp" and where.processes.value() == 2
    assert where.fsdp_box.isVisibleTo(where) and not where.ds_box.isVisibleTo(where)
    got, errors = win.config_model.collect()
    assert not errors and got.train.distributed == cfg.train.distributed
    # Strategy DeepSpeed shows its own options; going back to one process ends the extra ones.
    where.strategy.setCurrentIndex(where.strategy.findData("deepspeed"))
    assert where.ds_box.isVisibleTo(where) and not where.fsdp_box.isVisibleTo(where)
    where.strategy.setCurrentIndex(where.strategy.findData("single"))
    got, errors = win.config_model.collect()
    assert got.train.distributed.strategy == "single" and got.train.distributed.num_processes == 1
    assert not where.processes.isEnabled()


@pytest.mark.skipif(sys.platform != "linux", reason="multi-process runs are tested on Linux")
def test_two_process_cpu_run_starts_and_stops_on_every_rank(make_window, qtbot, tiny_config, monkeypatch):
    import psutil

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    win = make_window()
    cfg = tiny_config(steps=2000)
    win.config_model.set_config(cfg)
    where = win.panels["training"].where
    where.strategy.setCurrentIndex(where.strategy.findData("fsdp"))
    where.processes.setValue(2)
    qtbot.waitUntil(win.act_start.isEnabled, timeout=5000)
    events = []
    win.runs.supervisor.sig_event.connect(events.append)
    with qtbot.waitSignal(win.runs.supervisor.sig_event, timeout=RUN_TIMEOUT_MS,
                          check_params_cb=lambda ev: ev.get("event") == "step" and ev["step"] >= 2):
        assert win.runs.start()
    started = next(e for e in events if e["event"] == "started")
    # Rank 0's events reach the window; the run really is two FSDP ranks.
    assert started["world_size"] == 2 and started["distributed_type"] == "FSDP"
    assert sum(1 for e in events if e["event"] == "started") == 1
    run_yaml = str(Path(started["run_dir"]) / "run.yaml")

    def ranks():
        out = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            # A rank (python [-u] -m engine train run.yaml …), not the launcher holding the same words.
            if run_yaml in cmd and "engine" in cmd and "accelerate.commands.launch" not in cmd:
                out.append(p)
        return out

    assert len(ranks()) == 2
    with qtbot.waitSignal(win.runs.supervisor.sig_finished, timeout=RUN_TIMEOUT_MS) as blocker:
        win.act_stop.trigger()
    ev = blocker.args[0]
    assert ev["event"] == "stopped" and 2 <= ev["step"] < 2000
    assert win.panels["monitor"].state_label.text().startswith("Stopped")
    qtbot.waitUntil(lambda: not ranks(), timeout=30_000)       # Stop reached every rank: all exited
    adapter = Path(ev["adapter_dir"])
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()


def test_cluster_mode_writes_a_slurm_script_instead_of_starting(make_window, qtbot, tiny_config):
    win = make_window()
    win.config_model.set_config(tiny_config())
    where = win.panels["training"].where
    where.cluster.setChecked(True)
    where.nodes.setValue(2)
    where.gpus_per_node.setValue(4)
    where.partition.setText("gpu")
    where.strategy.setCurrentIndex(where.strategy.findData("fsdp"))
    # Start runs on this machine only: a cluster run starts from its script.
    qtbot.waitUntil(lambda: not win.act_start.isEnabled(), timeout=5000)
    assert "cluster script" in win.config_model.errors["train.distributed.num_machines"]
    assert where.error.isVisibleTo(where)
    with qtbot.waitSignal(where.sig_script, timeout=120_000) as blocker:
        where.write_button.click()
    script = Path(blocker.args[0])
    text = script.read_text()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=4" in text and "#SBATCH --partition=gpu" in text
    assert where.script_view.toPlainText() == text and str(script) in where.script_path.text()
    subprocess.run(["bash", "-n", str(script)], check=True)
    written = RunConfig.load(script.parent / "run.yaml").train.distributed
    assert (written.strategy, written.num_machines, written.num_processes) == ("fsdp", 2, 8)
    assert (script.parent / "accelerate_config.yaml").exists()
