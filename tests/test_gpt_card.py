"""The GPT model card: every figure comes from the folder's files, and a replaced model's
figures stand beside the new ones (issue 27)."""

from __future__ import annotations

import json

import torch

from playground.gpt import card

SUMMARY = {"steps": 2400, "wall_time_s": 3600.0, "parameters": 8_550_000,
           "train_chars": 3_119_787, "train_tokens": 764_713, "val_chars": 433_229,
           "held_out": "the whole novel Northanger Abbey", "tokens_per_step": 8192,
           "final_metrics": {"loss": 3.1},
           "gpt_config": {"n_layer": 8, "n_embd": 256, "n_head": 4, "block_size": 512,
                          "vocab_size": 8192, "weight_decay": 0.1, "lr": 0.0015,
                          "warmup_steps": 150, "min_lr_ratio": 0.1, "batch_size": 16,
                          "dropout": 0.15, "grad_clip": 1.0, "reflow": True}}
EVAL = {"full": {"nats_per_char": 1.0912, "bits_per_char": 1.574, "token_perplexity": 105.5},
        "first_20000_chars": {"nats_per_char": 1.15}, "stride": "context/2"}
PREVIOUS = {"what": "the old model", "parameters": 6_901_760, "shape": "6 layers, context 256",
            "text": "the printed text", "steps": 1167, "tokens_seen": 4_780_032,
            "wall_time_min": 100.1, "nats_per_char_whole_text_ids": 1.2106,
            "nats_per_char_paragraph_piece_ids": 1.1623, "token_perplexity_whole_text_ids": 118.83,
            "stray_line_breaks_in_20_samples": 194}


def _folder(tmp_path, previous: bool):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "training_summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "eval.json").write_text(json.dumps(EVAL))
    if previous:
        (tmp_path / card.PREVIOUS).write_text(json.dumps(PREVIOUS))
    data = tmp_path / "austen.txt"
    data.write_text("text")
    return data


def test_card_puts_the_previous_model_beside_this_one(tmp_path, monkeypatch):
    monkeypatch.setattr(card, "_samples", lambda folder: ["(a sample)"])
    data = _folder(tmp_path, previous=True)
    text = card.write_card(tmp_path, str(data), ["python -m playground.train gpt ..."],
                           extra_wall_s=1800.0, device="1 CPU thread", stray=0)
    assert (tmp_path / "README.md").read_text() == text
    assert "stored in fp32" in text and "**1.0912**" in text and "| wall time | 90.0 min |" in text
    assert "| wall time | 100.1 min | 90.0 min |" in text
    assert "| stray line breaks, 20 samples of 200 tokens | 194 | 0 |" in text
    assert "1.2106 (1.1623 on the paragraph-piece ids" in text and "| 1.0912 |" in text
    assert "2,400 / 19,660,800" in text and "reflowed into paragraphs" in text
    assert "trained for 1.5 hours" in text


def test_card_without_a_previous_model_has_no_such_section(tmp_path, monkeypatch):
    monkeypatch.setattr(card, "_samples", lambda folder: ["(a sample)"])
    text = card.write_card(tmp_path, str(_folder(tmp_path, previous=False)), ["cmd"])
    assert "The previous model" not in text and "| device | 1 CPU thread |" in text
