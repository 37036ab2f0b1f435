"""What a run teaches: the training tasks (``train.task``) and what each one needs and reports.

``sft`` is supervised fine-tuning (the answers are the targets). The others are preference
tuning, run through TRL's trainers (engine/training/preference.py): ``dpo`` (Direct Preference
Optimization), ``orpo`` (odds-ratio preference optimization), ``simpo`` (Simple Preference
Optimization, TRL's CPO trainer with ``loss_type="simpo"``) learn from chosen/rejected pairs;
``kto`` (Kahneman-Tversky Optimization) from single answers labelled desirable or not.

A :class:`TaskSpec` declares what the rest of the engine needs to know about a task, so that the
estimator, preflight, the data report and the studio's monitor read declarations instead of
comparing task names (the same habit as the methods' capabilities, engine/methods/spec.py).
This module is a leaf: plain data, no imports from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-step number a task's trainer logs (TRL's key), with the label and unit to show it."""

    key: str          # TRL's log key, e.g. "rewards/margins"
    label: str
    unit: str
    group: str        # the plot it belongs in (metrics of one group share a plot)


# TRL's preference metrics (trl.DPOTrainer, KTOTrainer, experimental ORPO/CPO trainers, 1.16).
_REWARDS = (Metric("rewards/chosen", "chosen reward", "β·log-ratio to the reference (nats)", "rewards"),
            Metric("rewards/rejected", "rejected reward", "β·log-ratio to the reference (nats)", "rewards"))
_MARGIN = Metric("rewards/margins", "reward margin (chosen − rejected)", "nats", "margin")
_ACCURACY = Metric("rewards/accuracies", "reward accuracy (chosen > rejected)", "fraction of pairs", "accuracy")
_LOGPS = (Metric("logps/chosen", "log-probability of the chosen answers", "nats per answer", "logps"),
          Metric("logps/rejected", "log-probability of the rejected answers", "nats per answer", "logps"))


@dataclass(frozen=True)
class TaskSpec:
    """One training task.

    ``data``: what a data set must hold: ``sft`` (prompts and answers), ``paired`` (chosen and
    rejected answers to one prompt) or ``unpaired`` (one answer and a boolean label; paired data
    is split into one desirable and one undesirable row). ``reference``: the loss compares the
    policy with a frozen reference model (DPO, KTO); ORPO and SimPO are reference-free.
    ``sequences_per_example``: sequences one training example puts through the model (DPO: the
    prompt with the chosen answer and with the rejected one; KTO: the answer and a mismatched
    answer for its KL estimate). ``length_normalised``: the sequence log-probability is averaged
    over its tokens (SimPO, ORPO) rather than summed. ``metrics``: what its trainer logs per step
    (the monitor plots these in place of the SFT panels). ``loss_types``: the values of
    ``train.preference.loss_type`` it accepts (the first is its default). ``virtual_tokens``:
    its trainer reads log-probabilities past the virtual tokens (or key/value prefix) of
    prompt-learning methods (TRL 1.16's DPO and KTO trainers do; its ORPO and CPO trainers compare
    the logits with the labels position by position, which the extra positions shift).
    """

    name: str
    title: str
    description: str
    data: str                                  # sft | paired | unpaired
    reference: bool = False
    sequences_per_example: int = 1
    length_normalised: bool = False
    metrics: tuple[Metric, ...] = ()
    loss_types: tuple[str, ...] = ()
    virtual_tokens: bool = True
    paper: str = ""
    # The train.preference field weighting a supervised loss on the chosen answers added to the
    # task's loss, where the task has one (DPO: RPO's rpo_alpha; SimPO: CPO's cpo_alpha).
    sft_weight_field: str = ""

    @property
    def is_preference(self) -> bool:
        return self.data != "sft"


# DPOConfig.loss_type (trl 1.16); the first is the default.
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
KTO_LOSSES = ("kto", "apo_zero_unpaired")

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec("sft", "Supervised fine-tuning", "Learn the answers in the data: the loss is the cross-entropy "
             "of the assistant's tokens.", data="sft"),
    TaskSpec("dpo", "DPO", "Direct Preference Optimization: raise the chosen answer's likelihood relative to "
             "the rejected one, measured against a frozen reference (the base with the adapter disabled).",
             data="paired", reference=True, sequences_per_example=2,
             metrics=(*_REWARDS, _MARGIN, _ACCURACY, *_LOGPS), loss_types=DPO_LOSSES, paper="2305.18290",
             sft_weight_field="rpo_alpha"),
    TaskSpec("orpo", "ORPO", "Odds-Ratio Preference Optimization: supervised loss on the chosen answer plus "
             "an odds-ratio penalty on the rejected one; no reference model.", data="paired",
             sequences_per_example=2, length_normalised=True,
             metrics=(*_REWARDS, _MARGIN, _ACCURACY, *_LOGPS,
                      Metric("log_odds_ratio", "log odds ratio", "nats", "odds"),
                      Metric("nll_loss", "chosen NLL", "nats per token", "odds")), virtual_tokens=False,
             paper="2403.07691"),
    TaskSpec("kto", "KTO", "Kahneman-Tversky Optimization: single answers labelled desirable or "
             "undesirable, each pushed up or down against a frozen reference; no pairs needed.",
             data="unpaired", reference=True, sequences_per_example=2,
             metrics=(*_REWARDS, _MARGIN, *_LOGPS, Metric("kl", "KL estimate to the reference", "nats", "kl")),
             loss_types=KTO_LOSSES, paper="2402.01306"),
    TaskSpec("simpo", "SimPO", "Simple Preference Optimization: the length-normalised log-probability is "
             "the reward, with a target margin γ; no reference model (TRL's CPO trainer, loss simpo).",
             data="paired", sequences_per_example=2, length_normalised=True,
             metrics=(*_REWARDS, _MARGIN, _ACCURACY, *_LOGPS), virtual_tokens=False, paper="2405.14734",
             sft_weight_field="cpo_alpha"),
]}

TASK_NAMES = list(TASKS)
PREFERENCE_TASKS = [n for n, t in TASKS.items() if t.is_preference]


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; KeyError for an unknown one (RunConfig.validate names the field)."""
    return TASKS[name]


def metric_groups(task: TaskSpec) -> dict[str, list[Metric]]:
    """The task's metrics by plot, in order."""
    out: dict[str, list[Metric]] = {}
    for m in task.metrics:
        out.setdefault(m.group, []).append(m)
    return out
