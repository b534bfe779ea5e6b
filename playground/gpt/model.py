"""The GPT itself: a GPT-2 (``transformers.GPT2LMHeadModel``) with tied input/output embeddings,
built from a ``GPTConfig`` (``train.py``) and the tokenizer trained for it."""

from __future__ import annotations


def build_model(cfg, tokenizer):
    """A freshly initialised ``GPT2LMHeadModel`` (input/output embeddings tied) of the shape
    in ``cfg`` (a ``train.GPTConfig``: block_size, n_embd, n_layer, n_head, dropouts).

    ``config.reflowed_text`` (saved in config.json) records that the model was trained on
    ``data.reflow``-ed paragraphs, so evaluation reflows the held-out text the same way."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.block_size,
                        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                        attn_pdrop=cfg.attn_dropout, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
                        reflowed_text=bool(getattr(cfg, "reflow", False)))
    return GPT2LMHeadModel(config)


def fill_tied_head_on_load(model):
    """Let a strict ``load_state_dict`` take a state without ``lm_head.weight``.

    The head is tied to the input embedding, and accelerate's checkpoint keeps one copy of a
    shared tensor (``transformer.wte.weight``); the hook fills the head's key from it, so
    ``core.training.export_checkpoint`` loads a GPT checkpoint like any other. Returns ``model``.
    """
    def hook(module, state_dict, prefix, *args) -> None:
        head, wte = prefix + "lm_head.weight", prefix + "transformer.wte.weight"
        if head not in state_dict and wte in state_dict:
            state_dict[head] = state_dict[wte]

    model.register_load_state_dict_pre_hook(hook)
    return model
