"""txt2img rows: our generate() vs the raw diffusers pipeline call (same model, steps, seed);
UNet time per denoising step inside our call vs a raw UNet forward + scheduler loop."""

from __future__ import annotations

import torch

from bench.registry import benchmark, best_of_pair

STEPS = 10
PROMPT = "a small red circle at the top left on a blue background"


def _shipped():
    from playground import txt2img
    from playground.txt2img.inference import load_pipeline, with_scheduler

    txt2img.register_models()
    pipe = with_scheduler(load_pipeline(txt2img.SHIPPED).pipe, "DDIM")
    pipe.set_progress_bar_config(disable=True)
    return txt2img.SHIPPED, pipe


@benchmark("txt2img: generate() / raw pipeline call (10 steps)")
def call() -> dict:
    from playground.txt2img.inference import generate

    name, pipe = _shipped()

    def raw():
        pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=5.0,
             generator=[torch.Generator().manual_seed(0)])
    ours, reference = best_of_pair(lambda: generate(name, PROMPT, steps=STEPS, guidance=5.0,
                                                    seed=0, show_steps=False, autoguidance=0.0),
                                   raw)
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "ours adds validation, scheduler swap, PNG + record; no step previews, "
                    "no autoguidance (the raw call has none)"}


@benchmark("txt2img: generate() with / without autoguidance (10 steps)")
def autoguidance_cost() -> dict:
    """The app's default for our model (guide UNet on the conditional half) against off."""
    from playground.txt2img import SHIPPED_AUTOGUIDANCE, SHIPPED_GUIDANCE
    from playground.txt2img.inference import generate

    name, _ = _shipped()

    def run(weight):
        return lambda: generate(name, PROMPT, steps=STEPS, guidance=SHIPPED_GUIDANCE, seed=0,
                                show_steps=False, autoguidance=weight)
    ours, reference = best_of_pair(run(SHIPPED_AUTOGUIDANCE), run(0.0))
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": "the guide UNet also runs on the prompt half of the batch at t <= 600 "
                    "(6 of these 10 steps)"}


@benchmark("txt2img: UNet time per step / raw unet loop")
def unet_steps() -> dict:
    """Per-step seconds (1/steps-per-second): ours = generate() with guidance 1 (one UNet call
    per step), step previews off; reference = encode prompt once, then UNet + DDIM step."""
    from playground.txt2img.inference import generate

    name, pipe = _shipped()
    steps = 20

    @torch.no_grad()
    def raw():
        ids = pipe.tokenizer([PROMPT], padding="max_length", return_tensors="pt",
                             max_length=pipe.tokenizer.model_max_length).input_ids
        hidden = pipe.text_encoder(ids)[0]
        size = pipe.unet.config.sample_size
        x = torch.randn((1, pipe.unet.config.in_channels, size, size),
                        generator=torch.Generator().manual_seed(0))
        pipe.scheduler.set_timesteps(steps)
        for t in pipe.scheduler.timesteps:
            eps = pipe.unet(x, t, hidden).sample
            x = pipe.scheduler.step(eps, t, x).prev_sample
        pipe.vae.decode(x / pipe.vae.config.scaling_factor)
    ours, reference = best_of_pair(lambda: generate(name, PROMPT, steps=steps, guidance=1.0,
                                                    seed=0, show_steps=False, autoguidance=0.0),
                                   raw)
    ours, reference = ours / steps, reference / steps
    return {"ours": ours, "reference": reference, "unit": "s/step",
            "note": f"{1 / ours:.0f} vs {1 / reference:.0f} steps/s at 64 px, batch 1"}


LIVE_STEPS = 20


def _one_thread(fn):
    """Run ``fn`` with torch on one thread (the row's setting), then restore the count."""
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)
    run.__name__ = fn.__name__
    return run


@benchmark("txt2img with live preview / without (20 steps, 1 thread)")
@_one_thread
def live_preview_cost() -> dict:
    """The app's Generate (the preview streamed: the steps' x0 of the batch decoded in the
    caller's thread, within ``preview.PREVIEW_BUDGET``) against the same call, no preview."""
    from playground import txt2img
    from playground.txt2img.inference import generate
    from playground.txt2img.preview import generate_stream

    name, _ = _shipped()
    settings = {"steps": LIVE_STEPS, "guidance": txt2img.SHIPPED_GUIDANCE, "seed": 0,
                "show_steps": False, "autoguidance": 0.0}
    shown = []

    def live():
        frames = list(generate_stream(name, PROMPT, **settings))
        shown.append(len(frames) - 1)
    ours, reference = best_of_pair(live, lambda: generate(name, PROMPT, **settings))
    return {"ours": ours, "reference": reference, "unit": "s",
            "note": f"{min(shown)}-{max(shown)} of {LIVE_STEPS} steps shown (the preview's "
                    "time budget skips the rest), 64 px, guidance on"}


@benchmark("txt2img time to first preview frame / one UNet step (1 thread)")
@_one_thread
def first_frame() -> dict:
    """From the call (validation, scheduler swap, prompt encoding, the first step, its x0
    decoded and enlarged) to the first frame in hand, against one UNet call on the same batch
    (classifier-free guidance: the prompt and the empty prompt, 64 px)."""
    import time

    from playground import txt2img
    from playground.txt2img.preview import generate_stream

    name, pipe = _shipped()
    ids = pipe.tokenizer([PROMPT, ""], padding="max_length", return_tensors="pt",
                         max_length=pipe.tokenizer.model_max_length).input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
    size = pipe.unet.config.sample_size
    x = torch.randn((2, pipe.unet.config.in_channels, size, size),
                    generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def unet_step() -> float:
        t0 = time.perf_counter()
        pipe.unet(x, 999, hidden)
        return time.perf_counter() - t0

    def to_first_frame() -> float:
        t0 = time.perf_counter()
        stream = generate_stream(name, PROMPT, steps=LIVE_STEPS, seed=0, show_steps=False,
                                 guidance=txt2img.SHIPPED_GUIDANCE, autoguidance=0.0)
        next(stream)
        elapsed = time.perf_counter() - t0
        stream.close()  # stops the run after the step in flight
        return elapsed
    to_first_frame(), unet_step()  # warm-up
    ours, reference = [], []
    for _ in range(9):  # alternately, as best_of_pair does
        reference.append(unet_step())
        ours.append(to_first_frame())
    return {"ours": min(ours), "reference": min(reference), "unit": "s",
            "note": "first frame = the x0 estimate after step 1, decoded and enlarged to 256 px"}
