"""Does the prompt's corner move the object? A direct look at the UNet, without sampling.

For each of a few colour/background pairs, the four corner captions ("... at the top left ...")
go through the UNet at a high-noise step from the same noise; the predicted clean images are
decoded, and each caption's deviation from the four captions' mean is summed per quadrant. A
caption "hits" when its strongest quadrant is the one it names: 4 of 4 per pair when the model
places corners, about 1 in 4 (chance) when it does not.

`python -m playground.txt2img.position_probe weights/txt2img-shapes` prints the figure;
`--fit-steps 300` then trains a copy of the UNet on the corner captions alone, at t = 999 only
(the text encoder frozen), and prints how often the x0 prediction puts the object in the named
quadrant: whether this architecture can place corners at all when the signal is not diluted.
"""

from __future__ import annotations

import argparse

import torch

from playground.txt2img.shapes import CORNERS

PAIRS = (("red", "black"), ("yellow", "blue"), ("white", "green"))
TIMESTEPS = (999, 800)


def quadrant_means(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, 4): the mean of each quadrant, in CORNERS order."""
    h, w = maps.shape[-2] // 2, maps.shape[-1] // 2
    return torch.stack([maps[:, :h, :w].mean((1, 2)), maps[:, :h, w:].mean((1, 2)),
                        maps[:, h:, :w].mean((1, 2)), maps[:, h:, w:].mean((1, 2))], dim=1)


def quadrant_hits(maps: torch.Tensor) -> int:
    """``maps``: (4, C, H, W) images for the four CORNERS captions, in that order."""
    deviation = (maps - maps.mean(0)).abs().sum(1)  # (4, H, W)
    return int((quadrant_means(deviation).argmax(1) == torch.arange(4)).sum())


def predicted_x0(scheduler, zt: torch.Tensor, out: torch.Tensor, t: int) -> torch.Tensor:
    """The clean latents the UNet output ``out`` at step ``t`` implies (v or ε prediction)."""
    a = scheduler.alphas_cumprod[t]
    if scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * zt - (1 - a).sqrt() * out
    return (zt - (1 - a).sqrt() * out) / a.sqrt()


@torch.no_grad()
def corner_probe(pipe, *, n_noise: int = 8, seed: int = 0) -> dict:
    """Hits out of ``4 * len(PAIRS) * len(TIMESTEPS)`` (see the module docstring)."""
    unet, vae, scheduler, tokenizer = pipe.unet, pipe.vae, pipe.scheduler, pipe.tokenizer
    size = unet.config.sample_size
    noise = torch.randn(n_noise, unet.config.in_channels, size, size,
                        generator=torch.Generator().manual_seed(seed))
    hits = total = 0
    for t in TIMESTEPS:
        a = scheduler.alphas_cumprod[t]
        zt = (1 - a).sqrt() * noise  # the noise part of z_t: the prompt alone must place it
        for colour, background in PAIRS:
            maps = []
            for corner in CORNERS:
                prompt = f"a large {colour} circle at the {corner} on a {background} background"
                ids = tokenizer([prompt] * n_noise, padding="max_length", return_tensors="pt",
                                max_length=tokenizer.model_max_length).input_ids
                out = unet(zt, torch.full((n_noise,), t), pipe.text_encoder(ids)[0]).sample
                x0 = predicted_x0(scheduler, zt, out, t)
                maps.append(vae.decode(x0 / vae.config.scaling_factor).sample.mean(0))
            hits += quadrant_hits(torch.stack(maps))
            total += 4
    return {"hits": hits, "total": total, "chance": total // 4}


def focused_fit(pipe, steps: int, *, every: int = 50, batch: int = 32, lr: float = 1e-3,
                seed: int = 0, report=None) -> list[tuple[int, float, float]]:
    """Train a copy of ``pipe.unet`` at t = 999 on one-object corner scenes (a large red circle
    on black); returns (step, loss, corner accuracy of the x0 prediction) every ``every``,
    also passed to ``report`` as they come."""
    import copy
    import random

    import numpy as np
    import torch.nn.functional as F

    from playground.txt2img.model import training_target
    from playground.txt2img.shapes import Obj, Scene, render
    from playground.txt2img.train import images_to_tensor

    unet = copy.deepcopy(pipe.unet).train()
    rng = random.Random(seed)
    scenes = [Scene((Obj("circle", "red", "large", rng.choice(CORNERS)),), "black")
              for _ in range(256)]
    images = images_to_tensor(np.stack([np.asarray(render(s, rng)) for s in scenes]))
    size = pipe.unet.config.sample_size
    with torch.no_grad():
        z0 = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer([s.caption for s in scenes], padding="max_length",
                             max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids
        hidden = pipe.text_encoder(ids)[0]
    corner = torch.tensor([CORNERS.index(s.objects[0].position) for s in scenes])
    t, a = 999, pipe.scheduler.alphas_cumprod[999]
    test_noise = torch.randn(64, z0.shape[1], size, size,
                             generator=torch.Generator().manual_seed(seed + 9))

    @torch.no_grad()
    def accuracy() -> float:
        zt = (1 - a).sqrt() * test_noise
        x0 = predicted_x0(pipe.scheduler, zt, unet(zt, torch.full((64,), t), hidden[:64]).sample, t)
        quadrants = quadrant_means(x0.abs().sum(1))
        return float((quadrants.argmax(1) == corner[:64]).float().mean())

    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    history = [(0, float("nan"), accuracy())]
    if report:
        report(*history[0])
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(scenes), (batch,), generator=gen)
        noise = torch.randn(z0[idx].shape, generator=gen)
        zt = a.sqrt() * z0[idx] + (1 - a).sqrt() * noise
        target = training_target(pipe.scheduler, z0[idx], noise, torch.full((batch,), t))
        loss = F.mse_loss(unet(zt, torch.full((batch,), t), hidden[idx]).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            history.append((step, loss.item(), accuracy()))
            if report:
                report(*history[-1])
    return history


def main(argv: list[str] | None = None) -> dict:
    from diffusers import DiffusionPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--fit-steps", type=int, default=0)
    args = parser.parse_args(argv)
    if args.fit_steps < 0:
        parser.error("--fit-steps must be 0 (no fit) or more")
    pipe = DiffusionPipeline.from_pretrained(args.folder, torch_dtype=torch.float32)
    result = corner_probe(pipe)
    print(f"corner probe: {result['hits']}/{result['total']} (chance {result['chance']})")
    if args.fit_steps > 0:
        focused_fit(pipe, args.fit_steps, report=lambda step, loss, acc: print(
            f"focused fit step {step}: loss {loss:.4f}, corner accuracy {acc:.2f}", flush=True))
    return result


if __name__ == "__main__":
    main()
