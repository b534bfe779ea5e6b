"""Text-to-image inference: one diffusers pipeline call, any scheduler, the denoising recorded.

Plain values in, plain values out (no gradio): the tab, the API, the tests and the benchmark all
call ``generate``. Models (ours in ``weights/`` or a hub SD id) load through the registry with
``DiffusionPipeline.from_pretrained``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from playground.core import registry, repro, sessions
from playground.core.errors import UserInputError, check_range
from playground.core.seeding import make_generator
from playground.txt2img import MAX_TIMESTEP, diffusion, suggested_settings
from playground.txt2img.autoguidance import Autoguidance
from playground.txt2img.pipelines import (  # noqa: F401  -- also the module's public API
    COPIES,
    LoadedPipeline,
    copy_pool,
    load_pipeline,
    pipeline_copy,
)
from playground.txt2img.pnginfo import PngParameters, read_parameters  # noqa: F401  -- same

FAMILY = "txt2img"
SCHEDULERS = {  # label -> diffusers class name (swapped with from_config)
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler ancestral": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "PNDM": "PNDMScheduler",
}
MAX_PROMPT_CHARS = 1000
MAX_STEPS = 100
MAX_GUIDANCE = 30.0
MAX_IMAGES = 4
MAX_AUTOGUIDANCE = 5.0


@dataclass
class Generation:
    images: list[Image.Image]
    paths: list[Path]  # PNGs carrying the reproducibility record
    trajectory: list[Image.Image]  # decoded x0 prediction after each step (first image)
    seed: int
    record: dict
    notes: list[str] = field(default_factory=list)
    stopped_at: int | None = None  # denoising steps done when Stop ended the run (None: all)
    total_steps: int = 0  # the pipeline's denoising steps (PNDM: one more than asked for)


@dataclass
class Extras:
    """What the tab's other views add to one ``generate`` run (every field optional).

    on_step: called after each denoising step with (the pipeline, steps done, total steps,
        the x0 estimate of every image: latents (B, C, h, w)); the live preview (preview.py).
    noise: ``(pipe, seed, n_images, width, height) -> (latents (B, C, h, w), generators)``,
        the initial noise and the generators the sampler goes on with; seed variation
        (``variation.py``). None: the pipeline draws image i's noise from ``seed + i``.
    attach: ``(pipe, width, height) ->`` a context manager around the pipeline call (the
        attention recorder of ``attention.py``).
    params: more parameters for the reproducibility record.
    save: False writes no PNG (the X/Y grid saves one PNG of all its cells).
    """
    on_step: Callable[[object, int, int, torch.Tensor], None] | None = None
    noise: Callable | None = None
    attach: Callable | None = None
    params: dict = field(default_factory=dict)
    save: bool = True


def with_scheduler(pipe, scheduler: str):
    """A pipeline sharing ``pipe``'s modules with a fresh scheduler of the chosen kind."""
    import diffusers

    if scheduler not in SCHEDULERS:
        raise UserInputError(f"Unknown scheduler {str(scheduler)[:40]!r}; choose one of "
                             f"{', '.join(SCHEDULERS)}.")
    cls = getattr(diffusers, SCHEDULERS[scheduler])
    extra = {"skip_prk_steps": True} if scheduler == "PNDM" else {}  # as SD ships PNDM
    new = cls.from_config(pipe.scheduler.config, **extra)
    options = {k: pipe.config[k] for k in ("requires_safety_checker",) if k in pipe.config}
    return type(pipe)(**{**pipe.components, "scheduler": new}, **options)


def size_rule(pipe) -> tuple[int, int, int]:
    """(multiple, smallest, largest) image side the pipeline's UNet and VAE allow."""
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    multiple = vae_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    native = pipe.unet.config.sample_size * vae_factor
    return multiple, max(multiple, native // 2), native * 2


def check_prompt(prompt, name: str = "Prompt", required: bool = True) -> str:
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise UserInputError(f"{name} must be text.")
    if required and not prompt.strip():
        raise UserInputError(f"{name} is empty: describe the image, e.g. 'a small red circle at "
                             "the top left on a blue background'.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UserInputError(f"{name} is too long ({len(prompt)} characters); the limit is "
                             f"{MAX_PROMPT_CHARS}.")
    return prompt.strip()


def check_size(pipe, width, height) -> tuple[int, int]:
    multiple, low, high = size_rule(pipe)
    sides = []
    for label, value in (("Width", width), ("Height", height)):
        value = check_range(label, value, low, high, integer=True)
        if value % multiple:
            raise UserInputError(f"{label} {value} is not supported by this model: use a "
                                 f"multiple of {multiple} between {low} and {high}.")
        sides.append(value)
    return sides[0], sides[1]


class TrajectoryRecorder:
    """The step callback (``callback_on_step_end``): captures the UNet's noise prediction and,
    after each step, decodes the model's current estimate of the clean image x0 for the first
    image (if ``enabled``); and ends the run there if ``stop()`` says so.

    On a stop the pipeline's latents are replaced by the x0 estimate of every image and the
    pipeline is interrupted (diffusers skips the remaining steps, then decodes), so what comes
    back is the model's guess of the final images at that step, not the noisy latents.
    """

    def __init__(self, pipe, guidance: float, enabled: bool = True,
                 stop: Callable[[], bool] | None = None,
                 on_step: Callable[[object, int, int, torch.Tensor], None] | None = None
                 ) -> None:
        self.pipe, self.guidance, self.enabled, self.stop = pipe, guidance, enabled, stop
        self.on_step = on_step
        self.frames: list[tuple[float, Image.Image]] = []
        self.captured = None
        self.stopped_at: int | None = None  # steps done when a stop ended the run
        self.alphas = pipe.scheduler.alphas_cumprod
        self.v_prediction = diffusion.is_v_prediction(pipe.scheduler)

    def hook(self, module, args, kwargs, output) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.captured = (sample.detach(), output[0].detach() if isinstance(output, tuple)
                         else output.sample.detach())

    def x0(self, pipe, timestep) -> torch.Tensor:
        """The guided estimate of the clean latents from the last UNet call: (B, C, h, w)."""
        x_t, eps = self.captured  # (k*B, C, h, w): k = 2 with classifier-free guidance
        if pipe.do_classifier_free_guidance:
            uncond, cond = eps.chunk(2)
            eps = uncond + self.guidance * (cond - uncond)
            x_t = x_t.chunk(2)[1]
        t = int(round(float(timestep)))
        a = self.alphas[min(max(t, 0), len(self.alphas) - 1)].to(x_t)
        # UNet input is VP-form x_t for every scheduler (Euler-type scale their input to it)
        return diffusion.x0_from_prediction(x_t, eps, a, self.v_prediction)

    @torch.no_grad()
    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        if self.captured is None:
            return callback_kwargs
        if self.enabled:
            self._record_frame(pipe, timestep)
        if self.on_step is not None:
            self.on_step(pipe, step + 1, pipe.num_timesteps, self.x0(pipe, timestep))
        if self.stop is not None and step + 1 < pipe.num_timesteps and self.stop():
            self.stopped_at = step + 1
            latents = callback_kwargs["latents"]
            callback_kwargs["latents"] = self.x0(pipe, timestep).to(latents.dtype)
            pipe._interrupt = True  # diffusers' own flag: the remaining steps are skipped
        return callback_kwargs

    def _record_frame(self, pipe, timestep) -> None:
        vae = pipe.vae
        x0 = self.x0(pipe, timestep)[:1]
        decoded = vae.decode(x0.to(vae.dtype) / vae.config.scaling_factor).sample
        image = pipe.image_processor.postprocess(decoded.float(), output_type="pil")[0]
        if self.frames and self.frames[-1][0] == float(timestep):
            self.frames[-1] = (float(timestep), image)  # PNDM evaluates its 2nd timestep twice
        else:
            self.frames.append((float(timestep), image))


def validate(prompt, negative_prompt, steps, guidance, scheduler, n_images,
             autoguidance=0.0, autoguidance_max_t=MAX_TIMESTEP) -> dict:
    """Checks that need no model; returns the cleaned parameters."""
    if scheduler not in SCHEDULERS:
        raise UserInputError(f"Unknown scheduler {str(scheduler)[:40]!r}; choose one of "
                             f"{', '.join(SCHEDULERS)}.")
    return {"prompt": check_prompt(prompt),
            "negative_prompt": check_prompt(negative_prompt, "Negative prompt", required=False),
            "steps": check_range("Steps", steps, 1, MAX_STEPS, integer=True),
            "guidance": check_range("Guidance scale", guidance, 0.0, MAX_GUIDANCE),
            "autoguidance": check_range("Autoguidance", autoguidance, 0.0, MAX_AUTOGUIDANCE),
            "autoguidance_max_t": check_range("Autoguidance up to timestep", autoguidance_max_t,
                                              0, MAX_TIMESTEP, integer=True),
            "scheduler": scheduler,
            "n_images": check_range("Number of images", n_images, 1, MAX_IMAGES, integer=True)}


def token_note(pipe, prompt: str) -> str | None:
    tok = pipe.tokenizer
    n = len(tok(prompt).input_ids)
    if n > tok.model_max_length:
        return (f"The prompt has {n} tokens; this model reads only the first "
                f"{tok.model_max_length} (the rest was ignored).")
    return None


def sample(pipe, prompt: str | list[str], generators: list[torch.Generator], *, steps: int,
           guidance: float, negative_prompt: str | None = None, images_per_prompt: int = 1,
           width: int | None = None, height: int | None = None, guide=None,
           autoguidance: float = 0.0, autoguidance_max_t: float = MAX_TIMESTEP,
           recorder: TrajectoryRecorder | None = None,
           latents: torch.Tensor | None = None) -> list[Image.Image]:
    """The one sampler: a diffusers pipeline call (its scheduler as given) with autoguidance
    (when a ``guide`` UNet and a weight are given) and the step ``recorder`` hooked on its UNet.
    ``generate`` and ``evaluate.generate_for`` both call it.

    Args:
        prompt: one prompt (``images_per_prompt`` images) or a list (one image each).
        generators: one CPU generator per image.
        width, height: pixels; None = the pipeline's native size.
        latents: the initial noise (B, C, h, w); None = drawn from ``generators``.
    """
    handles = []
    if guide is not None and autoguidance:  # first: the recorder sees the autoguided prediction
        handles.append(Autoguidance(pipe, guide, autoguidance, autoguidance_max_t).attach())
    if recorder is not None:
        handles.append(pipe.unet.register_forward_hook(recorder.hook, with_kwargs=True))
    try:
        return pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=steps,
                    guidance_scale=guidance, num_images_per_prompt=images_per_prompt,
                    generator=generators, width=width, height=height, latents=latents,
                    callback_on_step_end=recorder).images
    finally:
        for handle in handles:
            handle.remove()


def generate(model: str, prompt: str, negative_prompt: str = "", steps: int | None = None,
             guidance: float | None = None, seed: int = 0, scheduler: str = "DDIM",
             n_images: int = 1, width: int | None = None, height: int | None = None,
             show_steps: bool = True,
             out_dir: Path | None = None, autoguidance: float | None = None,
             autoguidance_max_t: int | None = None,
             stop: Callable[[], bool] | None = None,
             extras: Extras | None = None) -> Generation:
    """Run the pipeline once; images come back as PIL and as PNG files with the full record.

    Args:
        steps, guidance: None = the model's suggested values (``suggested_settings``).
        seed: image i uses a CPU generator seeded with ``seed + i``.
        width, height: pixels; None = the model's native size.
        show_steps: also decode the x0 estimate after every step (first image only).
        autoguidance: weight of the push away from the model's guide UNet (autoguidance.py);
            None = the model's suggested weight; a model without a guide ignores it (a note).
        autoguidance_max_t: autoguidance only at timesteps up to this one (0-1000); None = the
            model's suggestion.
        stop: asked after every step; True ends the run there, and the images are the model's
            prediction of the final images at that step (``stopped_at`` says which).
        extras: what the live preview, seed variation and attention views add (``Extras``).
    """
    try:  # the request's one registry look-up; a bad name is reported after the other inputs
        entry, bad_model = registry.resolve(FAMILY, model), None
    except UserInputError as error:
        entry, bad_model = None, error
    own = suggested_settings(entry or model)
    params = validate(prompt, negative_prompt, own.steps if steps is None else steps,
                      own.guidance if guidance is None else guidance, scheduler, n_images,
                      own.autoguidance if autoguidance is None else autoguidance,
                      own.autoguidance_max_t if autoguidance_max_t is None
                      else autoguidance_max_t)
    if bad_model is not None:
        raise bad_model
    with pipeline_copy(entry) as loaded:
        return _sample_with(loaded, entry, params, seed, width, height, show_steps, stop,
                            out_dir, extras or Extras())


def _sample_with(loaded, entry, params, seed, width, height, show_steps, stop, out_dir,
                 extras: Extras):
    """``generate``'s sampling on one pipeline copy, its images saved with their record."""
    base = loaded.pipe
    native = base.unet.config.sample_size * 2 ** (len(base.vae.config.block_out_channels) - 1)
    width, height = check_size(base, width or native, height or native)
    pipe = with_scheduler(base, params["scheduler"])
    notes = []
    if params["autoguidance"] and loaded.guide is None:
        notes.append("This model has no guide UNet, so autoguidance was off.")
        params["autoguidance"] = 0.0
    recorder = TrajectoryRecorder(pipe, params["guidance"], enabled=show_steps, stop=stop,
                                  on_step=extras.on_step)
    generators = [make_generator(seed + i) for i in range(params["n_images"])]
    latents = None
    if extras.noise is not None:
        latents, generators = extras.noise(pipe, seed, params["n_images"], width, height)
    with extras.attach(pipe, width, height) if extras.attach else contextlib.nullcontext():
        images = sample(pipe, params["prompt"], generators, steps=params["steps"],
                        guidance=params["guidance"],
                        negative_prompt=params["negative_prompt"] or None,
                        images_per_prompt=params["n_images"], width=width, height=height,
                        guide=loaded.guide, autoguidance=params["autoguidance"],
                        autoguidance_max_t=params["autoguidance_max_t"], recorder=recorder,
                        latents=latents)
    stopped = {} if recorder.stopped_at is None else {"stopped_at_step": recorder.stopped_at}
    record = repro.make_record(FAMILY, entry.name, entry.source,
                               {**params, "width": width, "height": height, **extras.params,
                                **stopped}, seed, revision=registry.revision(entry))
    paths = save_images(images, record, out_dir) if extras.save else []
    total = pipe.num_timesteps
    if recorder.stopped_at is not None:
        notes.insert(0, f"Stopped at step {recorder.stopped_at}/{total}: the images are the "
                        "model's prediction of the final image at that step.")
    notes += [n for n in (token_note(pipe, params["prompt"]),) if n]
    return Generation(images, paths, [f for _, f in recorder.frames], seed, record, notes,
                      recorder.stopped_at, total)


def output_path(stem: str, out_dir: Path | None = None) -> Path:
    """A fresh PNG path: in the requesting session's output folder (``sessions.unique_output``:
    never shared between users, deleted with the session), or in ``out_dir`` (scripts, tests);
    a random suffix either way, so no file is rewritten while it is being served."""
    if out_dir is None:
        return sessions.unique_output(FAMILY, stem, ".png")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}-{uuid.uuid4().hex[:10]}.png"


def save_images(images: list[Image.Image], record: dict, out_dir: Path | None = None) -> list[Path]:
    """One PNG per image (``output_path``); each carries ``record`` plus its index in the batch."""
    paths = []
    for index, image in enumerate(images):
        rec = {**record, "params": {**record["params"], "image_index": index}}
        paths.append(repro.save_png(image, rec, output_path(f"txt2img-{index}", out_dir)))
    return paths


def save_frames(frames: list[Image.Image], out_dir: Path | None = None) -> list[str]:
    """The denoising frames as PNG files (for a gallery strip and the scrubber), each under a
    fresh name (``output_path``)."""
    paths = []
    for i, frame in enumerate(frames, start=1):
        path = output_path(f"txt2img-step{i:03d}", out_dir)
        frame.save(path)
        paths.append(str(path))
    return paths
