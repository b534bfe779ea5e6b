"""How each family works, one small view each, drawn from the shipped fits of a target (plain
functions returning ``View``s of PNG paths that carry a reproducibility record):

- GAN: the discriminator's D(x) as a heatmap under the generator's samples;
- VAE: where held-out points land in latent space, and the decoder's mean over a latent grid;
- flow: base noise warped layer by layer into data (the Flows tab's picture);
- diffusion: the forward noising of the data, and the reverse trajectory (a scrubber's frames);
- autoregressive: p(x), and the slice p(y | x = x0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from playground.compare import FAMILY, diffusion, shipped_name
from playground.compare.inference import held_out_points, load_fits
from playground.compare.render import curve_image, heatmap, panel_image, strip, titled
from playground.core import registry
from playground.core.errors import check_range
from playground.core.plot2d import angle_colors, draw_points, layer_panel, scatter_image
from playground.core.repro import make_record, save_png
from playground.core.seeding import make_generator
from playground.core.sessions import unique_output
from playground.data.targets2d import BOX, grid_points

GRID = 128
SIZE = 260


@dataclass
class View:
    images: list[str]  # PNG paths
    caption: str
    frames: list[str] = field(default_factory=list)  # the diffusion scrubber's frames


def _context(target: str):
    entry = registry.resolve(FAMILY, shipped_name(target))
    return entry, load_fits(entry)


def _save(image: Image.Image, entry, view: str, params: dict, seed: int) -> str:
    record = make_record(FAMILY, entry.name, entry.source, {"view": view, **params}, seed)
    return str(save_png(image, record, unique_output(FAMILY, view, ".png")))


@torch.no_grad()
def gan_view(target: str, seed: int = 0) -> View:
    entry, models = _context(target)
    gan = models["gan"]
    pts, _ = grid_points(GRID)
    d = torch.sigmoid(gan.discriminate(pts)).reshape(GRID, GRID).numpy()
    image = heatmap(d, SIZE)
    draw_points(image, gan.sample(600, make_generator(seed)).numpy(), color=(255, 80, 60),
                radius=1.3)
    caption = (f"D(x) = P(real) over the plane (yellow = 'real', purple = 'fake'); red: G's "
               f"samples. D ranges {d.min():.2f}–{d.max():.2f}: at equilibrium it is ½ "
               "wherever G puts its mass, and nothing ties it to a density.")
    return View([_save(titled(image, "GAN: discriminator D(x) + samples"), entry, "gan", {},
                       seed)], caption)


@torch.no_grad()
def vae_view(target: str, seed: int = 0) -> View:
    entry, models = _context(target)
    vae = models["vae"]
    x = held_out_points(target, 800)
    colors = angle_colors(x.numpy())
    z_mean, _ = vae.encode(vae.to_u(x))
    latent = scatter_image(np.zeros((0, 2)), SIZE)
    draw_points(latent, z_mean[:, :2].numpy(), colors=colors, radius=1.5)
    ticks = torch.linspace(-2.5, 2.5, 11)
    t = torch.linspace(-2.5, 2.5, 80)
    lines = [torch.stack([torch.full_like(t, v), t], 1) for v in ticks]
    lines += [torch.stack([t, torch.full_like(t, v)], 1) for v in ticks]
    pad = [torch.zeros(len(t), vae.latent_dim - 2)] if vae.latent_dim > 2 else []
    warped = [vae.decoded_mean(torch.cat([ln, *pad], 1)).numpy() for ln in lines]
    z = torch.randn(600, vae.latent_dim, generator=make_generator(seed))
    decoded = layer_panel(warped, vae.decoded_mean(z).numpy(),
                          np.tile([[60, 60, 200]], (600, 1)), "decoded mean m(z)\nz grid",
                          size=SIZE, box=BOX)
    caption = ("Left: each held-out point's encoding mean μ(x) in latent space (colour = the "
               "point's angle in data space) — the encoder packs the data into N(0, I). Right: "
               "the decoder's mean m(z) for a grid of z and for random z: samples add noise of "
               "the decoder's std around m(z), which is why VAE samples look blurred.")
    latent = titled(latent, "VAE: latent mean of q(z|x), coloured by x")
    images = [_save(latent, entry, "vae-latent", {}, seed),
              _save(decoded, entry, "vae-decoded", {}, seed)]
    return View(images, caption)


@torch.no_grad()
def flow_view(target: str, seed: int = 0) -> View:
    from playground.flow.model import layer_inverse

    entry, models = _context(target)
    flow = models["flow"]
    z = torch.randn(600, 2, generator=make_generator(seed))
    colors = angle_colors(z.numpy())
    states = layer_inverse(flow, z)
    names = flow.layer_names()
    panels = [layer_panel([], s.numpy(), colors,
                          "base z ~ N(0, I)" if k == 0 else
                          f"after {k}: {names[len(names) - k]}", size=200)
              for k, s in enumerate(states)]
    caption = ("Base noise (left) pushed through the inverse of each layer in turn; points "
               "keep their colour. Every layer is invertible with a known volume change, which "
               "is what makes the flow's likelihood exact.")
    return View([_save(strip(panels, columns=min(len(panels), 5)), entry, "flow", {}, seed)],
                caption)


@torch.no_grad()
def diffusion_view(target: str, seed: int = 0, frames: int = 11) -> View:
    entry, models = _context(target)
    model = models["diffusion"]
    abar = diffusion.make_scheduler(model).alphas_cumprod
    big_t = len(abar)
    x = held_out_points(target, 600)
    u0, gen = model.to_u(x), make_generator(seed)
    eps = torch.randn(u0.shape, generator=gen)
    forward = []
    for i in np.linspace(0, big_t - 1, 5).round().astype(int):
        xi = model.to_x(abar[i].sqrt() * u0 + (1 - abar[i]).sqrt() * eps)
        forward.append(panel_image(f"q(x_t | x_0), t = {i + 1}", xi.numpy(), size=180))
    keep = set(np.linspace(0, big_t - 1, frames).round().astype(int).tolist())
    shots: list[tuple[int, np.ndarray]] = []
    diffusion.sample(model, 600, gen, on_step=lambda i, xi: shots.append((i, xi.numpy()))
                     if i in keep else None)
    paths = [_save(panel_image(f"reverse: step {i + 1}/{big_t} (t = {big_t - i - 1})", pts,
                               size=SIZE), entry, f"diffusion-{i}", {"step": i}, seed)
             for i, pts in shots]
    caption = (f"Top: the forward process blurs the data into N(0, I) over {big_t} steps. "
               "Slider: the DDPM's reverse trajectory, from pure noise back to data, one "
               "learned denoising step at a time.")
    return View([_save(strip(forward), entry, "diffusion-forward", {}, seed)], caption, paths)


@torch.no_grad()
def ar_view(target: str, x0: float = 0.0, seed: int = 0) -> View:
    entry, models = _context(target)
    ar = models["ar"]
    x0 = check_range("x0", x0, -BOX, BOX)
    xs = torch.linspace(-BOX, BOX, 400)
    pts = torch.stack([xs, torch.zeros_like(xs)], 1)
    log_px, _ = ar.log_prob_parts(pts)
    slice_pts = torch.stack([torch.full_like(xs, x0), xs], 1)
    _, log_py = ar.log_prob_parts(slice_pts)
    px = curve_image(xs.numpy(), [(log_px.exp().numpy(), (40, 90, 200))],
                     "p(x): the first coordinate's marginal", marker=x0)
    py = curve_image(xs.numpy(), [(log_py.exp().numpy(), (200, 80, 40))],
                     f"p(y | x = {x0:+.2f}): the second, given the first")
    joint = _joint_with_line(ar, x0)
    caption = ("The autoregressive model writes p(x, y) = p(x) · p(y | x): one exact 1-D "
               "density at a time (mixtures of Gaussians here). Sampling follows the same "
               "order: draw x, then y given x. Move the slider to slice the joint density.")
    params = {"x0": x0}
    return View([_save(joint, entry, "ar-joint", params, seed),
                 _save(px, entry, "ar-px", params, seed),
                 _save(py, entry, "ar-py", params, seed)], caption)


def _joint_with_line(ar, x0: float) -> Image.Image:
    pts, _ = grid_points(GRID)
    logq = ar.log_prob(pts).reshape(GRID, GRID).numpy()
    image = panel_image("AR: p(x, y), slice at x0", np.zeros((0, 2)), logq, size=SIZE)
    col = (x0 + BOX) / (2 * BOX) * SIZE
    ImageDraw.Draw(image).line([(col, 22), (col, SIZE + 22)], fill=(255, 80, 60), width=2)
    return image


VIEWS = {"gan": gan_view, "vae": vae_view, "flow": flow_view, "diffusion": diffusion_view}
