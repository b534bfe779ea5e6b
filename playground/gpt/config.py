"""The GPT's settings: one dataclass for tokenizer, model and optimisation, plus a builder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GPTConfig:
    """A GPT-2-style causal LM trained from scratch on one text file."""

    vocab_size: int = 8192  # byte-level BPE trained on the training split
    n_embd: int = 256
    n_layer: int = 6
    n_head: int = 4
    block_size: int = 256  # context length in tokens
    dropout: float = 0.1  # residual and embedding dropout
    attn_dropout: float = 0.0  # dropout inside attention makes SDPA ~30% slower on CPU
    batch_size: int = 16
    steps: int = 1700  # default number of optimisation steps for this preset
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    compile: bool = False  # torch.compile the training forward (~20% faster on CPU, ~40 s start)
    time_budget_s: float = 0.0  # >0: fit the LR schedule into this wall time, then stop
    eval_every: int = 100  # steps between held-out evaluations (0 = never)
    eval_windows: int = 24  # (block_size)-token windows of the held-out text per evaluation
    sample_prompt: str = "It is a truth universally acknowledged"
    sample_tokens: int = 60


def build_model(cfg: GPTConfig, tokenizer):
    """A freshly initialised ``GPT2LMHeadModel`` (input/output embeddings tied)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.block_size,
                        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                        attn_pdrop=cfg.attn_dropout, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return GPT2LMHeadModel(config)
