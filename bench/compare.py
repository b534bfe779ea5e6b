"""Compare rows: samples/s of each family's sampler (``sampling.draw``, what the scores and the
panels use) against the bare network calls it is made of, on the shipped 8-Gaussians fits; and
the live refit of all five (the tab's default 400 steps, worker start and scoring included)
against the 60 s the issue allows."""

from __future__ import annotations

import time

import torch

from bench.registry import benchmark, best_of_pair

N = 2000


def _fits() -> dict:
    from playground import compare
    from playground.compare.inference import load_fits

    compare.register_models()
    return load_fits(compare.shipped_name("8gaussians"))


def _raw_call(family: str, model):
    """The network calls a sampler cannot avoid, with the noise drawn once beforehand."""
    gen = torch.Generator().manual_seed(0)
    if family == "gan":
        z = torch.randn(N, model.latent_dim, generator=gen)
        return lambda: model.generator(z)
    if family == "vae":
        z = torch.randn(N, model.latent_dim, generator=gen)
        return lambda: model.decoder(z)
    if family == "flow":
        z = torch.randn(N, 2, generator=gen)
        return lambda: model.flow().transform.inv(z)
    if family == "ar":
        x = torch.randn(N, generator=gen)
        return lambda: model.conditional(x[:, None])
    u = torch.randn(N, 2, generator=gen)  # diffusion: T calls of the noise predictor
    steps = range(model.config.num_train_timesteps)
    return lambda: [model(u, torch.full((N,), t)) for t in steps]


def _sampling_row(family: str) -> dict:
    from playground.compare.sampling import draw

    torch.set_num_threads(1)
    model = _fits()[family]
    raw = _raw_call(family, model)

    def ours():
        draw(family, model, N, torch.Generator().manual_seed(1))
    with torch.no_grad():
        t_ours, t_raw = best_of_pair(ours, raw, repeats=3)
    return {"ours": t_ours / N * 1000, "reference": t_raw / N * 1000, "unit": "s/1k",
            "note": f"{N / t_ours:,.0f} samples/s vs {N / t_raw:,.0f}/s for the bare network "
                    "calls (shipped 8gaussians fit, one thread)"}


for _family in ("gan", "vae", "flow", "diffusion", "ar"):
    benchmark(f"compare: {_family} draw / raw module call")(
        lambda f=_family: _sampling_row(f))


@benchmark("compare: live refit of all five / 60 s budget")
def live_refit_row() -> dict:
    from playground.compare import tab

    t0, first = time.perf_counter(), None
    everyone = ["gan", "vae", "flow", "diffusion", "ar"]
    for frame in tab.fit_live("built-in target", "8gaussians", None, None, everyone, 400, 0,
                              False):
        if first is None and frame[0] is not None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    if not frame[6].startswith("Done"):
        raise RuntimeError(frame[6])
    return {"ours": total, "reference": 60.0, "unit": "s",
            "note": f"400 steps each, interleaved in one worker; first panels after {first:.1f} s; "
                    "worker start and held-out scoring included"}
