"""Train the convolutional VAE on faces with the shared loop.

`python -m playground.train vae --preset olivetti --out weights/vae-olivetti` (faces: the bundled
``assets/olivetti_faces.npz``, ``$PLAYGROUND_FACES``, or ``--data`` a .npz/.mat file or an image
folder)

Loss: the negative ELBO (discretized-logistic reconstruction NLL + beta * KL), with beta ramped
from 0 to its final value over the first ``kl_warmup`` steps so the decoder learns to use z
before the KL pulls the posterior to the prior. Whole persons are held out for validation; the
held-out ELBO (beta = 1, bits/dim) is logged. Real photos are mirrored and shifted a little.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from playground.core.config import resolve_preset
from playground.core.errors import UserInputError, check_range
from playground.core.training import LoopConfig, StepContext, TrainResult, TrainTask, train_loop
from playground.vae.likelihood import bits_per_dim, elbo_terms, evaluate_elbo
from playground.vae.model import ConvVAE
from playground.vae.split import SPLIT_NAME, load_split


@dataclass
class VAEConfig:
    latent_dim: int = 32
    base_width: int = 32
    max_width: int = 128
    batch_size: int = 32
    steps: int = 1500
    lr: float = 1e-3
    beta: float = 1.0  # final KL weight (1 = the true ELBO)
    kl_warmup: int = 300  # steps of linear beta ramp from 0
    max_shift: int = 2  # augmentation: shift up to this many pixels (and mirror)
    eval_samples: int = 4  # z samples per held-out face when logging the held-out ELBO
    per_image_scale: bool = False  # decoder predicts pixel scales (overfits 350 photos)


PRESETS: dict[str, VAEConfig] = {
    "tiny": VAEConfig(latent_dim=4, base_width=4, max_width=8, batch_size=8, steps=20,
                      kl_warmup=5, eval_samples=1),
    "olivetti": VAEConfig(),  # the shipped weights/vae-olivetti (~25 min on a shared CPU thread)
    "olivetti-quick": VAEConfig(steps=600, kl_warmup=100),  # in-browser run
    "olivetti-cuda": VAEConfig(latent_dim=64, base_width=64, max_width=256, steps=20000),
}
DEFAULT_PRESET = "olivetti"


# field: (lowest, highest, whole number) for the values a preset or --set may give
LIMITS: dict[str, tuple[float, float, bool]] = {
    "latent_dim": (1, 1024, True), "base_width": (1, 1024, True), "max_width": (1, 4096, True),
    "batch_size": (1, 4096, True), "steps": (1, 10**7, True), "lr": (1e-8, 1.0, False),
    "beta": (0.0, 100.0, False), "kl_warmup": (0, 10**7, True), "max_shift": (0, 16, True),
    "eval_samples": (1, 1024, True),
}


def resolve_config(preset: str, overrides: dict | None = None) -> VAEConfig:
    """A preset with ``--set`` overrides (core ``resolve_preset``), then the VAE's value checks."""
    cfg = resolve_preset(PRESETS, preset, overrides, family="VAE")
    checked = {name: check_range(name, getattr(cfg, name), low, high, integer=integer)
               for name, (low, high, integer) in LIMITS.items()}
    if not isinstance(cfg.per_image_scale, bool):
        raise UserInputError(f"per_image_scale must be true or false, got {cfg.per_image_scale!r}.")
    return dataclasses.replace(cfg, **checked)


def save_models(models: dict[str, torch.nn.Module], folder) -> None:
    """The task's artefact: the VAE alone, in HF format (config.json + model.safetensors)."""
    models["vae"].save_pretrained(folder)


def build_model(cfg: VAEConfig) -> ConvVAE:
    return ConvVAE(latent_dim=cfg.latent_dim, base_width=cfg.base_width, max_width=cfg.max_width,
                   per_image_scale=cfg.per_image_scale)


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random mirror and integer shift (edge-replicated, so pixels stay on the 8-bit grid).

    x: (B, 1, H, W).
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift <= 0:
        return x
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def batches(data: torch.Tensor, cfg: VAEConfig, seed: int):
    """Endless shuffled, augmented batches (B, 1, 64, 64) on the 8-bit grid."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        if len(data) < cfg.batch_size:  # tiny data: sample with replacement
            yield augment(data[torch.randint(len(data), (cfg.batch_size,), generator=gen)],
                          gen, cfg.max_shift)
            continue
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            yield augment(data[order[i:i + cfg.batch_size]], gen, cfg.max_shift)


def build_task(cfg: VAEConfig, loop: LoopConfig, train: torch.Tensor,
               val: torch.Tensor | None = None, init: ConvVAE | None = None,
               eval_every: int = 0) -> TrainTask:
    """The TrainTask: the VAE, Adam, augmented batches, held-out ELBO at each log.

    Args:
        train, val: (N, 1, 64, 64) faces in [0, 1] on the 8-bit grid.
        init: a model to continue from; a new one otherwise.
        eval_every: evaluate the held-out ELBO only at log rows whose step is a multiple of
            this (and at the last step); 0 = at every log row.
    """
    torch.manual_seed(loop.seed)
    model = init if init is not None else build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    fixed = torch.randn(16, model.latent_dim, generator=torch.Generator().manual_seed(1234))
    dims = train[0].numel()

    def step(ctx: StepContext, x: torch.Tensor) -> dict[str, float]:
        vae, acc = ctx.models["vae"], ctx.accelerator
        x = x.to(acc.device)
        terms = elbo_terms(x, vae(x, ctx.generator))
        beta = cfg.beta * min(1.0, ctx.step / max(1, cfg.kl_warmup))
        loss = (terms["nll"] + beta * terms["kl"]).mean()
        opt_ = ctx.optimizers["vae"]
        opt_.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt_.step()
        recon, kl = terms["nll"].mean().item(), terms["kl"].mean().item()
        # the loss's two terms per face, in nats: loss_nats = recon_nats + beta_kl_nats
        return {"loss_bpd": bits_per_dim(loss.item(), dims),
                "train_elbo_bpd": bits_per_dim(recon + kl, dims),
                "loss_nats": loss.item(), "recon_nats": recon, "kl": kl,
                "beta_kl_nats": beta * kl, "beta": beta}

    def evaluate(models, step: int) -> dict[str, float]:
        if val is None or len(val) == 0:
            return {}
        if eval_every and step % eval_every and step != loop.max_steps:
            return {}  # a log row between held-out evaluations
        out = evaluate_elbo(models["vae"], val, samples=cfg.eval_samples)
        return {f"val_{k}": v for k, v in out.items()}

    def sample(models, step_no: int) -> torch.Tensor:
        vae = models["vae"]
        return vae.decode(fixed.to(next(vae.parameters()).device)).cpu()  # (16, 1, 64, 64)

    summary = {"vae_config": dataclasses.asdict(cfg), "train_images": len(train),
               "val_images": 0 if val is None else len(val),
               "likelihood": "discretized logistic over 256 grey levels"}
    return TrainTask(models={"vae": model}, optimizers={"vae": opt},
                     batches=batches(train, cfg, loop.seed + 1), step=step,
                     save=save_models,
                     sample=sample, evaluate=evaluate, summary=summary)


def default_data() -> str | None:
    """The bundled faces (or $PLAYGROUND_FACES); None (scikit-learn's copy) if neither exists."""
    from playground.data.faces import faces_source

    source = faces_source()
    return str(source) if source is not None else None


def train_cli(preset: str, loop: LoopConfig, data: str | None, overrides: dict) -> TrainResult:
    """`python -m playground.train vae ...`: train (or --resume) and save to --out."""
    cfg = resolve_config(preset, overrides)
    torch.set_num_threads(max(1, torch.get_num_threads()))  # honours OMP_NUM_THREADS
    data = data or default_data()
    split = load_split(data)
    loop = dataclasses.replace(loop, max_steps=loop.max_steps or cfg.steps)
    task = build_task(cfg, loop, split.train, split.val)
    task.summary.update({"data": str(data), "held_out_persons": split.held_out_persons,
                         "split": SPLIT_NAME})
    return train_loop(loop, task)
