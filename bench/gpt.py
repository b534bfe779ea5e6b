"""GPT rows: our generate path vs raw ``model.generate``, and our training loop vs plain torch.

Every row measures ours and the reference in the same run on the same model object. Rates
are reported as time per unit (seconds per token), so lower ratios are better.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from bench.registry import benchmark, best_of_pair

PROMPT = "It is a truth universally acknowledged, that"
NEW_TOKENS = 48
SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.95)


def _model_name() -> tuple[str, str]:
    """The shipped model if installed, else a freshly initialised one of the same shape."""
    from playground.core import registry
    from playground.gpt import SHIPPED, register_models

    register_models()
    entry = registry.resolve("gpt", SHIPPED)
    if entry.path.exists():
        return SHIPPED, SHIPPED
    return _untrained_model(), "untrained gpt (weights/gpt-austen missing)"


def _untrained_model() -> str:
    import tempfile
    from pathlib import Path

    from playground.core import registry
    from playground.gpt.data import train_tokenizer
    from playground.gpt.model import build_model
    from playground.gpt.train import PRESETS

    folder = Path(tempfile.mkdtemp(prefix="bench-gpt-"))
    tok = train_tokenizer(PROMPT * 200, 300)
    build_model(PRESETS["austen"], tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    registry.register(registry.ModelEntry("bench-gpt", "gpt", path=folder))
    return "bench-gpt"


def _raw_inputs(lm):
    ids = lm.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    return ids, torch.ones_like(ids)


@benchmark("gpt: generate, s/token: ours (stream+odds) / model.generate")
def generate_speed() -> dict:
    """The request the tab sends when nobody touches its controls (120 tokens, temperature
    0.8, top-p 0.95), streamed with the odds of every token, against ``model.generate`` with
    the same settings; 25 pairs, alternating which goes first."""
    from playground.gpt import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SAMPLING, inference
    from playground.gpt.sampling import HAND_OVER_S

    torch.set_num_threads(1)
    name, note = _model_name()
    lm = inference.load_language_model(name)
    ids, mask = _raw_inputs(lm)
    n = DEFAULT_MAX_NEW_TOKENS

    def ours():
        inference.generate(name, PROMPT, max_new_tokens=n, min_new_tokens=n, seed=0,
                           **DEFAULT_SAMPLING)

    def raw():
        torch.manual_seed(0)
        lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                          max_new_tokens=n, min_new_tokens=n,
                          pad_token_id=lm.tokenizer.eos_token_id, **DEFAULT_SAMPLING)

    t_ours, t_raw = best_of_pair(ours, raw, repeats=25)  # this machine's noise needs many
    return {"ours": t_ours / n, "reference": t_raw / n, "unit": "s/token",
            "note": f"{name}; the tab's default request ({n} tokens, temperature "
                    f"{DEFAULT_SAMPLING['temperature']}, top-p {DEFAULT_SAMPLING['top_p']}), "
                    f"1 torch thread; ours reads the prompt's score off generate's first forward "
                    f"pass and hands text over at most every {HAND_OVER_S * 1000:.0f} ms; min of "
                    f"25 pairs ({note})"}


@benchmark("gpt: time to first token: ours (streamed) / 1-token generate")
def first_token() -> dict:
    from playground.gpt import inference

    torch.set_num_threads(1)
    name, note = _model_name()
    lm = inference.load_language_model(name)
    ids, mask = _raw_inputs(lm)

    def ours() -> float:
        t0 = time.perf_counter()
        stream = inference.stream_generate(name, PROMPT, max_new_tokens=NEW_TOKENS, seed=0,
                                           **SAMPLING)
        next(stream)
        elapsed = time.perf_counter() - t0
        stream.close()  # stops the generation thread (not timed)
        return elapsed

    def raw() -> float:
        t0 = time.perf_counter()
        torch.manual_seed(0)
        lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=1,
                          pad_token_id=lm.tokenizer.eos_token_id, **SAMPLING)
        return time.perf_counter() - t0

    ours(), raw()  # warm-up
    t_ours = min(ours() for _ in range(9))
    t_raw = min(raw() for _ in range(9))
    return {"ours": t_ours, "reference": t_raw, "unit": "s",
            "note": f"{name}: first streamed text vs generate(max_new_tokens=1) ({note})"}


@benchmark("gpt: training, s/token: shared loop / plain torch loop")
def training_speed() -> dict:
    from playground.core.training import LoopConfig, train_loop
    from playground.gpt.data import train_tokenizer
    from playground.gpt.train import PRESETS, build_task

    torch.set_num_threads(1)
    steps = 40
    cfg = dataclasses.replace(PRESETS["custom"], eval_every=0, compile=False)
    text = " ".join(f"{PROMPT} said Mr. Darcy to Elizabeth {i}." for i in range(3000))
    tok = train_tokenizer(text, cfg.vocab_size)
    loop = LoopConfig(max_steps=steps, log_every=10, progress=False, device="cpu")

    def ours() -> float:
        return train_loop(loop, build_task(cfg, loop, text, "", tok)).wall_time_s

    def plain() -> float:
        task = build_task(cfg, loop, text, "", tok)  # same seed: same init, same batches
        model, opt, sched = task.models["gpt"], task.optimizers["adamw"], task.schedulers["lr"]
        model.train()
        t0 = time.perf_counter()
        for _ in range(steps):
            batch = next(task.batches)
            loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
        return time.perf_counter() - t0

    times = {"ours": [], "plain": []}
    for _ in range(3):  # interleaved, best of three: the machine is shared
        times["ours"].append(ours())
        times["plain"].append(plain())
    t_ours, ref = min(times["ours"]), min(times["plain"])
    tokens = steps * cfg.batch_size * cfg.block_size
    return {"ours": t_ours / tokens, "reference": ref / tokens, "unit": "s/token",
            "note": f"'custom' preset ({cfg.n_layer}x{cfg.n_embd}), {steps} steps of "
                    f"{cfg.batch_size}x{cfg.block_size} tokens, 1 thread, no held-out eval"}
