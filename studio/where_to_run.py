""""Where to run": this machine (its GPUs, one process or several with a strategy), or a cluster
(a Slurm script to submit). It edits ``train.distributed`` and writes cluster scripts; Start runs
on this machine only (a several-process run starts through ``peft-studio launch``: see
studio/supervisor.py's ``engine_command``).

The strategy's own options are forms generated from the engine's typed sections
(``engine.config``: FsdpConfig, DeepSpeedConfig), like every other form.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import DeepSpeedConfig, DistributedConfig, FsdpConfig
from studio.forms import ERROR_COLOR, DataclassForm
from studio.tasks import start_job, start_thread
from studio.widgets import CheckedSpinBox

STRATEGY_LABELS = {"single": "One process", "ddp": "DDP (a copy per GPU)",
                   "fsdp": "FSDP (sharded)", "deepspeed": "DeepSpeed ZeRO"}


def list_gpus(timeout_s: float = 5.0) -> list[tuple[int, str, int]]:
    """(index, name, MiB) of this machine's NVIDIA GPUs, from nvidia-smi (no torch import in the
    window's process); [] without a driver. Blocking: call it off the UI thread."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout_s).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit():
            gpus.append((int(parts[0]), parts[1], int(float(parts[2]))))
    return gpus


class WhereToRun(QGroupBox):
    """The "Where to run" section. ``values()`` is the ``train.distributed`` dict (or errors),
    ``set_values`` shows one; ``config_source`` returns the whole current RunConfig (or None)
    for writing a cluster script."""

    sig_changed = Signal()
    sig_script = Signal(str)        # a cluster script was written (its path)

    def __init__(self, config_source: Callable[[], object] | None = None, parent=None,
                 probe_gpus: bool = True):
        super().__init__("Where to run", parent)
        self.setObjectName("section:where_to_run")
        self.config_source = config_source
        self.gpus: list[tuple[int, str, int]] = []
        self._gpu_boxes: list[QCheckBox] = []
        self._loading = False
        lay = QVBoxLayout(self)

        self.here = QRadioButton("This machine")
        self.here.setObjectName("field:where.here")
        self.cluster = QRadioButton("A cluster (write a Slurm script)")
        self.cluster.setObjectName("field:where.cluster")
        group = QButtonGroup(self)
        group.addButton(self.here)
        group.addButton(self.cluster)
        self.here.setChecked(True)

        # The strategy applies to both: processes on this machine, or nodes of a cluster.
        top = QFormLayout()
        self.strategy = QComboBox()
        self.strategy.setObjectName("field:train.distributed.strategy")
        for key, label in STRATEGY_LABELS.items():
            self.strategy.addItem(label, key)
        self.strategy.setToolTip(DistributedConfig.__dataclass_fields__["strategy"].metadata["help"])
        top.addRow("Strategy:", self.strategy)
        lay.addLayout(top)

        # -- this machine ------------------------------------------------------------------
        lay.addWidget(self.here)
        self.here_box = QWidget()
        hf = QFormLayout(self.here_box)
        hf.setContentsMargins(18, 0, 0, 0)
        self.gpu_row = QWidget()
        self.gpu_layout = QHBoxLayout(self.gpu_row)
        self.gpu_layout.setContentsMargins(0, 0, 0, 0)
        self.gpu_note = QLabel("Looking for GPUs…")
        self.gpu_note.setWordWrap(True)  # "none found: …" on one line widened the Training dock
        self.gpu_layout.addWidget(self.gpu_note)
        self.gpu_layout.addStretch(1)
        hf.addRow("GPUs:", self.gpu_row)
        # checked spin boxes: out-of-range input is marked (and refused by values()), never changed
        self.processes = CheckedSpinBox(1, 1024, "Processes")
        self.processes.setObjectName("field:train.distributed.num_processes")
        self.processes.setToolTip("Processes to start: one per GPU (on a machine without GPUs, CPU "
                                  "processes, e.g. to try a strategy).")
        hf.addRow("Processes:", self.processes)
        lay.addWidget(self.here_box)

        # -- a cluster ---------------------------------------------------------------------
        lay.addWidget(self.cluster)
        self.cluster_box = QWidget()
        cf = QFormLayout(self.cluster_box)
        cf.setContentsMargins(18, 0, 0, 0)
        self.nodes = CheckedSpinBox(1, 4096, "Nodes")
        self.nodes.setObjectName("field:train.distributed.num_machines")
        self.nodes.setValue(2)
        cf.addRow("Nodes:", self.nodes)
        self.gpus_per_node = CheckedSpinBox(1, 64, "GPUs per node")
        self.gpus_per_node.setObjectName("field:where.gpus_per_node")
        self.gpus_per_node.setValue(8)
        cf.addRow("GPUs per node:", self.gpus_per_node)
        self.partition = QLineEdit()
        self.partition.setObjectName("field:where.partition")
        self.partition.setPlaceholderText("the cluster's default")
        cf.addRow("Partition:", self.partition)
        self.time_limit = QLineEdit()
        self.time_limit.setObjectName("field:where.time")
        self.time_limit.setPlaceholderText("e.g. 12:00:00")
        cf.addRow("Time limit:", self.time_limit)
        self.write_button = QPushButton("Write cluster script…")
        self.write_button.setObjectName("action:write_cluster_script")
        self.write_button.setToolTip("Write run.yaml, accelerate_config.yaml and slurm.sbatch into the run "
                                     "folder; submit the script with sbatch on the cluster")
        self.write_button.clicked.connect(lambda: self.write_script())
        self._write_task = None
        cf.addRow(self.write_button)
        self.script_path = QLabel()
        self.script_path.setWordWrap(True)
        self.script_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        cf.addRow(self.script_path)
        self.script_view = QPlainTextEdit()
        self.script_view.setObjectName("view:cluster_script")
        self.script_view.setReadOnly(True)
        self.script_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.script_view.setMinimumHeight(160)
        self.script_view.hide()
        cf.addRow(self.script_view)
        lay.addWidget(self.cluster_box)

        # -- the strategy's own options ----------------------------------------------------
        self.fsdp_form = DataclassForm(FsdpConfig, "train.distributed.fsdp")
        self.fsdp_box = QGroupBox("FSDP options")
        QVBoxLayout(self.fsdp_box).addWidget(self.fsdp_form)
        lay.addWidget(self.fsdp_box)
        self.ds_form = DataclassForm(DeepSpeedConfig, "train.distributed.deepspeed")
        self.ds_box = QGroupBox("DeepSpeed options")
        QVBoxLayout(self.ds_box).addWidget(self.ds_form)
        lay.addWidget(self.ds_box)
        self.error = QLabel()
        self.error.setObjectName("error:train.distributed")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error.hide()
        lay.addWidget(self.error)

        for sig in (self.here.toggled, self.strategy.currentIndexChanged, self.processes.valueChanged,
                    self.nodes.valueChanged, self.gpus_per_node.valueChanged, self.fsdp_form.sig_changed,
                    self.ds_form.sig_changed):
            sig.connect(self._changed)
        self.partition.textChanged.connect(lambda _t: self._sync_visibility())
        self._sync_visibility()
        if probe_gpus:
            # nvidia-smi, not torch: light work for a worker thread of this process.
            self._probe = start_thread(lambda _state: list_gpus(), parent=self, name="gpu-probe")
            self._probe.sig_result.connect(self.set_gpus)
        else:
            self.set_gpus([])

    # -- GPUs --------------------------------------------------------------------------------
    def set_gpus(self, gpus: list[tuple[int, str, int]]) -> None:
        """Show this machine's GPUs as check boxes, all checked (CUDA_VISIBLE_DEVICES)."""
        self.gpus = list(gpus)
        for box in self._gpu_boxes:
            box.deleteLater()
        self._gpu_boxes = []
        if not gpus:
            self.gpu_note.setText("none found: the run trains on the CPU")
            self.gpu_note.show()
        else:
            self.gpu_note.hide()
            for index, name, mib in gpus:
                box = QCheckBox(f"{index}: {name} ({mib / 1024:.0f} GB)")
                box.setObjectName(f"field:where.gpu.{index}")
                box.setChecked(True)
                box.toggled.connect(self._gpus_toggled)
                self.gpu_layout.insertWidget(self.gpu_layout.count() - 1, box)
                self._gpu_boxes.append(box)
        self._changed()

    def _gpus_toggled(self) -> None:
        chosen = sum(b.isChecked() for b in self._gpu_boxes)
        if chosen and self.strategy.currentData() != "single":
            self.processes.setValue(chosen)
        self._changed()

    def _gpu_ids(self) -> str:
        if not self._gpu_boxes or all(b.isChecked() for b in self._gpu_boxes):
            return "all"
        return ",".join(str(i) for (i, _n, _m), b in zip(self.gpus, self._gpu_boxes) if b.isChecked())

    # -- values ------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._loading:
            return
        self._sync_visibility()
        self.sig_changed.emit()

    def _sync_visibility(self) -> None:
        here = self.here.isChecked()
        strategy = self.strategy.currentData()
        self.here_box.setEnabled(here)
        self.cluster_box.setEnabled(not here)
        self.processes.setEnabled(here and strategy != "single")
        if not here and strategy == "single":
            self.strategy.setToolTip("Several nodes are several processes: one process means DDP there.")
        self.fsdp_box.setVisible(strategy == "fsdp")
        self.ds_box.setVisible(strategy == "deepspeed")

    def values(self) -> tuple[dict, dict[str, str]]:
        """(the ``train.distributed`` dict, {path: message} for parts that do not parse)."""
        errors: dict[str, str] = {}
        fsdp, e1 = self.fsdp_form.values()
        ds, e2 = self.ds_form.values()
        errors.update(e1)
        errors.update(e2)
        for box, path in ((self.processes, "train.distributed.num_processes"),
                          (self.nodes, "train.distributed.num_machines"),
                          (self.gpus_per_node, "train.distributed.num_processes")):
            if not box.is_valid():
                errors.setdefault(path, box.problem())
        strategy = self.strategy.currentData()
        if self.here.isChecked():
            n = 1 if strategy == "single" else self.processes.value()
            machines = 1
        else:
            machines = self.nodes.value()
            n = machines * self.gpus_per_node.value()
            if strategy == "single":
                strategy = "ddp"      # several nodes are several processes
        return ({"strategy": strategy, "num_processes": n, "num_machines": machines, "gpu_ids": self._gpu_ids(),
                 "fsdp": fsdp, "deepspeed": ds}, errors)

    def set_values(self, d: DistributedConfig) -> None:
        """Show ``d`` without emitting a change per control."""
        self._loading = True
        try:
            cluster = d.num_machines > 1
            (self.cluster if cluster else self.here).setChecked(True)
            i = self.strategy.findData(d.strategy)
            self.strategy.setCurrentIndex(max(0, i))
            if cluster:
                self.nodes.setValue(d.num_machines)
                self.gpus_per_node.setValue(d.processes_per_machine)
            else:
                self.processes.setValue(d.num_processes)
            if d.gpu_ids.strip() != "all" and self._gpu_boxes:
                wanted = {int(x) for x in d.gpu_ids.split(",") if x.strip().isdigit()}
                for (index, _n, _m), box in zip(self.gpus, self._gpu_boxes):
                    box.setChecked(index in wanted)
            self.fsdp_form.set_values(d.fsdp)
            self.ds_form.set_values(d.deepspeed)
        finally:
            self._loading = False
        self._sync_visibility()
        self.sig_changed.emit()

    def set_errors(self, errors: dict[str, str]) -> None:
        """Mark the train.distributed.* problems (others are not this section's)."""
        self.fsdp_form.set_errors(errors)
        self.ds_form.set_errors(errors)
        mine = [m for p, m in errors.items()
                if p.startswith("train.distributed") and not p.startswith(("train.distributed.fsdp.",
                                                                           "train.distributed.deepspeed."))]
        self.error.setText("\n".join(mine))
        self.error.setVisible(bool(mine))

    @property
    def is_cluster(self) -> bool:
        return self.cluster.isChecked()

    # -- the cluster script ------------------------------------------------------------------
    def write_script(self):
        """Write the run's files and its sbatch script into the run folder (a job in the helper
        process: it reads the model's config and checks the method), then show the script.
        Returns the Task, or None when there is no valid configuration to write."""
        cfg = self.config_source() if self.config_source else None
        if cfg is None:
            self._script_message("Fix the marked fields first: the script is written from the whole run "
                                 "configuration.", error=True)
            return None
        self.write_button.setEnabled(False)
        self._script_message("Writing the cluster script…")
        task = start_job("cluster_script", cfg.to_dict(), self.nodes.value(), self.gpus_per_node.value(),
                         self.partition.text().strip(), self.time_limit.text().strip(), parent=self)
        task.sig_result.connect(self._script_written)
        task.sig_error.connect(self._script_failed)
        self._write_task = task
        return task

    def _script_failed(self, err) -> None:
        self.write_button.setEnabled(True)
        self._script_message(f"Could not write the script: {getattr(err, 'message', err)}", error=True)

    def _script_written(self, result: dict) -> None:
        self.write_button.setEnabled(True)
        path = Path(result["path"])
        self.script_view.setPlainText(result["text"])
        self.script_view.show()
        self._script_message(f"Written: {path}\nSubmit it on the cluster with: sbatch {path}")
        self.sig_script.emit(str(path))

    def _script_message(self, text: str, error: bool = False) -> None:
        self.script_path.setText(text)
        self.script_path.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")
