"""Run history: compare runs side by side (``peft-studio runs compare``) and bring runs made
elsewhere into the index (``peft-studio runs import``)."""

from engine.history.compare import Comparison, compare_runs, format_comparison
from engine.history.importer import find_trainer_state, import_trainer_run

__all__ = ["Comparison", "compare_runs", "find_trainer_state", "format_comparison", "import_trainer_run"]
