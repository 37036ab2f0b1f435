"""`peft-studio export | merge | merge-adapters` end to end, on a really trained tiny run."""

from __future__ import annotations

import json

import pytest
import torch

from engine.cli import main
from engine.export.testing import make_adapter_run, run_config, write_chat_data

IDS = torch.tensor([[1, 5, 9, 14, 20, 3, 7, 42]])


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """A real engine.training run (a few steps), so exports see real events and checkpoints."""
    import os

    from engine.training import train

    root = tmp_path_factory.mktemp("trained")
    old = os.environ.get("PEFT_STUDIO_HOME")
    os.environ["PEFT_STUDIO_HOME"] = str(root / "home")  # keep the run index out of the user's home
    try:
        write_chat_data(root / "data.jsonl", 24)
        cfg = run_config(tiny_model_dir, root / "run", "lora")
        cfg.train.max_steps = 4
        cfg.train.save_steps = 2
        cfg.train.batch_size = 4
        cfg.train.lr = 2e-2
        result = train(cfg)
    finally:
        if old is None:
            os.environ.pop("PEFT_STUDIO_HOME", None)
        else:
            os.environ["PEFT_STUDIO_HOME"] = old
    assert result.status == "finished", result.error
    return root / "run"


def test_export_adapter_cli_with_real_losses(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--adapter", "--out", str(tmp_path / "a")]) == 0
    assert "Adapter written to" in capsys.readouterr().out
    events = [json.loads(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    final = [e for e in events if e["event"] == "finished"][-1]["metrics"]
    card = (tmp_path / "a" / "README.md").read_text()
    assert f"{final['final_loss']:.4f}" in card and f"{final['train_loss']:.4f}" in card
    if final.get("eval_loss") is not None:
        assert f"{final['eval_loss']:.4f}" in card
    # Checkpoints are exportable too.
    assert main(["export", str(trained_run), "--checkpoint", "checkpoint-2", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "adapter_model.safetensors").exists()


def test_merge_cli_matches_peft(trained_run, tiny_model_dir, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert main(["merge", str(trained_run), "--dtype", "fp32", "--out", str(tmp_path / "m")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(trained_run / "adapter"))
    with torch.no_grad():
        assert (merged(IDS).logits - ref(IDS).logits).abs().max() < 1e-4
    # The output exists now: a second export refuses, with a plain message, unless --force.
    assert main(["export", str(trained_run), "--merge", "--out", str(tmp_path / "m")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(trained_run), "--merge", "--out", str(tmp_path / "m"), "--force"]) == 0


def test_gguf_cli_verifies(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run), "--gguf", "f32", "--verify", "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "GGUF model written" in out and "verified" in out
    assert list((tmp_path / "g").glob("*.f32.gguf"))


def test_default_output_folder(trained_run, capsys):
    assert main(["export", str(trained_run)]) == 0
    assert (trained_run / "exports" / "adapter" / "adapter_config.json").exists()


def test_prompt_tuning_merge_cli_says_it_cannot(tiny_model_dir, tmp_path, capsys):
    run = make_adapter_run(tmp_path / "pt", tiny_model_dir, "prompt_tuning")
    assert main(["export", str(run), "--merge", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "cannot be merged" in err and "Exported the adapter only" in err
    assert (tmp_path / "o" / "adapter_config.json").exists()


def test_merge_adapters_cli(tiny_model_dir, tmp_path, capsys):
    a = make_adapter_run(tmp_path / "a", tiny_model_dir, "lora", seed=1)
    b = make_adapter_run(tmp_path / "b", tiny_model_dir, "lora", seed=2)
    rc = main(["merge-adapters", str(a), str(b / "adapter"), "--weights", "0.7,0.3", "--method", "ties",
               "--density", "0.5", "--out", str(tmp_path / "w")])
    assert rc == 0 and "Weighted adapter written" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "w" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA"
    assert main(["merge-adapters", str(a), str(b), "--weights", "1,2,3", "--out", str(tmp_path / "x")]) == 2
    assert "one weight per adapter" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--merge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path), "--gguf", "q4_k"])  # argparse lists the valid types
