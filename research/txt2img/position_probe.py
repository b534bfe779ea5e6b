"""Does the prompt's corner move the object? A direct look at the UNet, without sampling.

For each of a few colour/background pairs, the four corner captions ("... at the top left ...")
go through the UNet at a high-noise step from the same noise; the predicted clean images are
decoded, and each caption's deviation from the four captions' mean is summed per quadrant. A
caption "hits" when its strongest quadrant is the one it names: 4 of 4 per pair when the model
places corners, about 1 in 4 (chance) when it does not.

`python -m research.txt2img.position_probe weights/txt2img-shapes` prints the figure;
`--fit-steps 300` then trains a copy of the UNet on the corner captions of one colour pair alone
(a large red circle on black), at t = 999 only (the text encoder frozen), and prints how often the
x0 prediction puts the object in the named quadrant: whether this architecture can place corners
at all when the signal is not diluted. `--diverse-share 0.5` fills half of each batch with other
one-object scenes; at the end the fitted copy is probed per colour pair (does what it learnt for
red on black carry over to other colours?).
"""

from __future__ import annotations

import argparse

import torch

from playground.txt2img.diffusion import add_noise, predicted_x0, training_target
from playground.txt2img.emphasis import corner_part, training_scenes
from playground.txt2img.model import caption_ids, encode_ids
from playground.txt2img.shapes import CORNERS

PAIRS = (("red", "black"), ("yellow", "blue"), ("white", "green"))
# for the per-pair look after a focused fit: the fitted pair first, then 5 others
FIT_PAIRS = (*PAIRS, ("green", "white"), ("orange", "gray"), ("purple", "black"))
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


def text_states(pipe, captions: list[str]) -> torch.Tensor:
    """The text encoder's output for ``captions`` padded as the pipeline pads them (B, T, D)."""
    return encode_ids(pipe.text_encoder, caption_ids(pipe.tokenizer, captions))


@torch.no_grad()
def corner_probe(pipe, *, n_noise: int = 8, seed: int = 0, pairs=PAIRS,
                 timesteps=TIMESTEPS) -> dict:
    """Hits out of ``4 * len(pairs) * len(timesteps)`` (see the module docstring)."""
    unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
    size = unet.config.sample_size
    noise = torch.randn(n_noise, unet.config.in_channels, size, size,
                        generator=torch.Generator().manual_seed(seed))
    hits = total = 0
    for t in timesteps:
        a = scheduler.alphas_cumprod[t]
        zt = (1 - a).sqrt() * noise  # the noise part of z_t: the prompt alone must place it
        for colour, background in pairs:
            maps = []
            for corner in CORNERS:
                prompt = f"a large {colour} circle at the {corner} on a {background} background"
                out = unet(zt, torch.full((n_noise,), t),
                           text_states(pipe, [prompt] * n_noise)).sample
                x0 = predicted_x0(scheduler, zt, out, t)
                maps.append(vae.decode(x0 / vae.config.scaling_factor).sample.mean(0))
            hits += quadrant_hits(torch.stack(maps))
            total += 4
    return {"hits": hits, "total": total, "chance": total // 4}


@torch.no_grad()
def encoder_probe(pipe, *, n: int = 3000, seed: int = 0) -> dict[int, float]:
    """Is the corner in the text encoder's output? For one-object corner captions, a linear
    (ridge least-squares) read-out of the corner from the hidden state at each token position
    (fitted on 2/3 of the captions, scored on the rest): {token index: accuracy}; chance 0.25."""
    import random

    from playground.txt2img.shapes import random_scene

    rng = random.Random(seed)
    scenes = [s for s in (random_scene(rng, two_objects_p=0.0) for _ in range(n))
              if s.objects[0].position in CORNERS]
    captions = [s.caption for s in scenes]
    hidden = text_states(pipe, captions)
    corner = torch.tensor([CORNERS.index(s.objects[0].position) for s in scenes])
    target = torch.nn.functional.one_hot(corner, 4).float()
    # up to the end-of-text token (CLIP pads with it; the pipeline passes all 32 positions)
    last = max(len(pipe.tokenizer(c).input_ids) for c in captions) - 1
    cut = len(scenes) * 2 // 3
    accuracy = {}
    for token in range(1, last + 1):
        x = torch.cat([hidden[:, token].double(), torch.ones(len(scenes), 1).double()], 1)
        gram = x[:cut].T @ x[:cut]  # ridge, so a rank-deficient state stays well posed
        ridge = 1e-6 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        w = torch.linalg.solve(gram + ridge, x[:cut].T @ target[:cut].double())
        accuracy[token] = float(((x[cut:] @ w).argmax(1) == corner[cut:]).float().mean())
    return accuracy


def focused_fit(pipe, steps: int, *, every: int = 50, batch: int = 32, lr: float = 1e-3,
                seed: int = 0, diverse_share: float = 0.0, report=None):
    """Train a copy of ``pipe.unet`` at t = 999 on one-object corner scenes (a large red circle
    on black), with a ``diverse_share`` of each batch from other one-object scenes; returns the
    copy and (step, loss on the red circles, corner accuracy of their x0 prediction) every
    ``every``, also passed to ``report`` as they come."""
    import copy
    import random

    import numpy as np
    import torch.nn.functional as F

    from playground.txt2img.shapes import Obj, Scene, images_to_tensor, random_scene, render
    from playground.txt2img.vae_stage import encode_latents

    unet = copy.deepcopy(pipe.unet).train()
    rng = random.Random(seed)
    scenes = [Scene((Obj("circle", "red", "large", rng.choice(CORNERS)),), "black")
              for _ in range(256)]
    n_diverse = round(batch * diverse_share)
    others = [random_scene(rng, two_objects_p=0.0) for _ in range(1024 if n_diverse else 0)]

    @torch.no_grad()
    def encode(group):  # clean latents and frozen text-encoder states
        if not group:
            return None, None
        images = images_to_tensor(np.stack([np.asarray(render(s, rng)) for s in group]))
        z = encode_latents(pipe.vae, images, batch=256) * pipe.vae.config.scaling_factor
        return z, text_states(pipe, [s.caption for s in group])

    (z0, hidden), (z_other, h_other) = encode(scenes), encode(others)
    size = pipe.unet.config.sample_size
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
    n_focus = batch - n_diverse
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(scenes), (n_focus,), generator=gen)
        z, h = z0[idx], hidden[idx]
        if n_diverse:
            other = torch.randint(0, len(others), (n_diverse,), generator=gen)
            z, h = torch.cat([z, z_other[other]]), torch.cat([h, h_other[other]])
        noise = torch.randn(z.shape, generator=gen)
        zt = add_noise(z, noise, a)
        target = training_target(pipe.scheduler, z, noise, torch.full((batch,), t))
        pred = unet(zt, torch.full((batch,), t), h).sample
        loss = F.mse_loss(pred, target)  # equal weights for every sample
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            focus_loss = F.mse_loss(pred[:n_focus], target[:n_focus]) if n_diverse else loss
            history.append((step, focus_loss.item(), accuracy()))
            if report:
                report(*history[-1])
    return unet.eval(), history


def main(argv: list[str] | None = None) -> dict:
    from diffusers import DiffusionPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--fit-steps", type=int, default=0)
    parser.add_argument("--diverse-share", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.fit_steps < 0:
        parser.error("--fit-steps must be 0 (no fit) or more")
    if not 0 <= args.diverse_share < 1:
        parser.error("--diverse-share must be in [0, 1)")
    pipe = DiffusionPipeline.from_pretrained(args.folder, torch_dtype=torch.float32)
    result = corner_probe(pipe)
    print(f"corner probe: {result['hits']}/{result['total']} (chance {result['chance']})")
    result["encoder"] = encoder_probe(pipe)
    print("text encoder, linear read-out of the corner per token (chance 0.25): "
          + ", ".join(f"{k}: {v:.2f}" for k, v in result["encoder"].items()))
    result["corner_part"] = corner_part(pipe.text_encoder, pipe.tokenizer,
                                        training_scenes(2000, 7))
    print(f"corner part of the text encoder's output (norm of what the position words change, "
          f"at its largest token): {result['corner_part']:.2f}")
    if args.fit_steps > 0:
        fitted, _ = focused_fit(
            pipe, args.fit_steps, diverse_share=args.diverse_share,
            report=lambda step, loss, acc: print(f"focused fit step {step}: loss {loss:.4f}, "
                                                 f"corner accuracy {acc:.2f}", flush=True))
        pipe.unet = fitted
        result["fitted_pairs"] = {f"{c} on {b}": corner_probe(pipe, pairs=((c, b),),
                                                              timesteps=(999,))["hits"]
                                  for c, b in FIT_PAIRS}
        print("fitted copy, corner probe at t = 999 per colour pair (of 4; chance 1): "
              + ", ".join(f"{k} {v}" for k, v in result["fitted_pairs"].items()))
    return result


if __name__ == "__main__":
    main()
