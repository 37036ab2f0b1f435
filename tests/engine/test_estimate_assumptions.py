"""`estimate-4bit-embeddings`: the estimate follows the settings the run will use and names what
it assumed (tests/data/cases/estimate-4bit-embeddings: Llama 3.2 3B's config.json, nf4, bf16).

The frozen embeddings and LM head of a quantized base were counted in fp32 whatever
model.upcast_embeddings said (so nf4 weights came out at 0.47× of bf16); training keeps them in the
compute dtype unless upcast_embeddings is on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from tests.engine.cases import case_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("est")
    model = tmp / "llama-3.2-3b"
    model.mkdir()
    (model / "config.json").write_bytes((REPO / "tests/data/cases/estimate-4bit-embeddings/config.json").read_bytes())
    return case_folder("estimate-4bit-embeddings", tmp, model, out=tmp / "out")


def _estimate(folder: Path, *overrides: str) -> dict:
    from engine.estimate import estimate

    cfg = RunConfig.load(folder / "run.yaml")
    if overrides:
        cfg = cfg.with_overrides(list(overrides))
    return estimate(cfg, "24GB").to_dict()


def test_frozen_embeddings_follow_upcast_embeddings(case):
    off = _estimate(case)
    on = _estimate(case, "model.upcast_embeddings=true")
    embeddings = 128256 * 3072  # tied: the input embeddings and the LM head are one tensor
    assert on["sizes"]["frozen_weights"] - off["sizes"]["frozen_weights"] == embeddings * 2
    bf16 = _estimate(case, "model.quantization=null")
    # Frozen nf4 weights with bf16 embeddings: well under half the bf16 model (it was 0.47× with fp32 ones).
    assert off["sizes"]["frozen_weights"] / bf16["sizes"]["frozen_weights"] < 0.35
    assert off["assumptions"]["dtypes"]["frozen embeddings and LM head"].startswith("bfloat16")
    assert on["assumptions"]["dtypes"]["frozen embeddings and LM head"].startswith("float32")


def test_the_estimate_names_its_assumptions_in_json_and_table(case):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-m", "engine", "estimate", "run.yaml", "--gpu", "24GB", "--json"],
                         cwd=case, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    a = json.loads(out.stdout)["assumptions"]
    assert a["attention"] == "sdpa" and a["loss"].startswith("chunked linear cross-entropy")
    assert a["packing"] is False and a["autocast"] == "bfloat16"
    assert set(a["dtypes"]) >= {"frozen linear weights", "frozen embeddings and LM head", "optimizer states",
                                "activations", "trainable parameters and gradients", "logits"}
    assert a["dtypes"]["frozen linear weights"].startswith("nf4")
    table = subprocess.run([sys.executable, "-m", "engine", "estimate", "run.yaml", "--gpu", "24GB"], cwd=case,
                           capture_output=True, text=True, timeout=600, env=env).stdout
    for line in ("attention kernel: sdpa", "loss: chunked linear cross-entropy", "packing: off",
                 "frozen embeddings and LM head: bfloat16", "frozen linear weights: nf4"):
        assert line in table, line


def test_the_loss_and_kernel_follow_the_run_file(case):
    std = _estimate(case, "train.loss_impl=standard", "model.attn_implementation=eager")
    assert std["assumptions"]["loss"].startswith("the model's own cross-entropy")
    assert std["assumptions"]["attention"] == "eager"
    packed = _estimate(case, "train.packing=true", "model.quantization=null")
    assert packed["assumptions"]["packing"] is True and packed["assumptions"]["attention"] == "sdpa_varlen"
