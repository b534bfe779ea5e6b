"""Compare family, the scores on cases with known answers: energy distance ≈ 0 for the same
distribution and growing with a shift; mode counts; likelihood bounds never below the entropy."""

from __future__ import annotations

import math

import pytest
import torch

from playground.compare.metrics import (
    NO_NLL_REASON,
    energy_distance,
    likelihood,
    mode_coverage,
    target_entropy,
    target_modes,
)
from playground.data.targets2d import get_target


def _g8(n: int, seed: int) -> torch.Tensor:
    return get_target("8gaussians").sample(n, torch.Generator().manual_seed(seed))


def test_energy_distance_same_distribution_is_zero_within_se():
    est = energy_distance(_g8(3000, 1), _g8(3000, 2))
    assert abs(est.value) < 3 * est.se and est.se < 0.005


def test_energy_distance_grows_with_a_shift():
    y = _g8(3000, 2)
    values = [energy_distance(_g8(3000, 1) + torch.tensor([s, 0.0]), y) for s in (0.25, 0.5, 1.0)]
    assert [v.value / v.se > z for v, z in zip(values, (2, 4, 8), strict=True)] == [True] * 3
    assert values[0].value < values[1].value < values[2].value
    assert values[2].value > 3 * values[1].value  # for small shifts D² grows like the square


def test_energy_distance_standard_error_is_calibrated():
    """Across repeated draws the jackknife SE matches the spread of the estimates (null and
    shifted), within the noise of 30 repetitions."""
    for shift in (0.0, 0.5):
        runs = [energy_distance(_g8(600, 2 * i) + torch.tensor([shift, 0.0]), _g8(600, 2 * i + 1))
                for i in range(30)]
        spread = torch.tensor([r.value for r in runs]).std().item()
        mean_se = sum(r.se for r in runs) / len(runs)
        assert 0.6 < mean_se / spread < 1.6, (shift, mean_se, spread)


def test_energy_distance_separates_a_collapsed_sampler():
    x = _g8(3000, 1)
    modes = target_modes("8gaussians")
    collapsed = x[modes.assign(x) < 3]  # only 3 of the 8 modes
    collapsed = collapsed[torch.randint(len(collapsed), (3000,),
                                        generator=torch.Generator().manual_seed(0))]
    good, bad = energy_distance(_g8(3000, 3), x), energy_distance(collapsed, x)
    assert bad.value - good.value > 10 * math.hypot(bad.se, good.se)


def test_mode_coverage_counts_and_misses():
    modes = target_modes("8gaussians")
    full = mode_coverage(_g8(4000, 0), modes)
    assert full.covered == 8 and full.missed == 0 and sum(full.counts) > 0.98 * 4000
    assert full.in_modes > 0.98
    x = _g8(4000, 0)
    three = mode_coverage(x[modes.assign(x) < 3], modes)
    assert three.covered == 3 and three.missed == 5 and three.counts[5] == 0
    far = mode_coverage(torch.zeros(100, 2), modes)  # all at the centre: in no mode
    assert far.covered == 0 and far.in_modes == 0
    rings = mode_coverage(get_target("rings").sample(3000, torch.Generator().manual_seed(0)),
                          target_modes("rings"))
    assert rings.covered == 3 and target_modes("moons") is None


def test_diffusion_bound_is_the_entropy_for_gaussian_data_and_optimal_noise():
    """For x ~ N(0, I) the optimal noise prediction is ε = sqrt(1 - ᾱ_i) x_i and every reverse
    step of variance β_i is exact: the variational bound equals the entropy log(2πe)."""
    from playground.compare.diffusion import DiffusionMLP, make_scheduler, variational_bound

    model = DiffusionMLP(width=8, num_train_timesteps=50)
    abar = make_scheduler(model).alphas_cumprod
    model.forward = lambda u, t: (1 - abar[t]).sqrt()[:, None] * u
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    bound = variational_bound(model, x, torch.Generator().manual_seed(1)).double()
    entropy = -(-0.5 * (x.double() ** 2).sum(1) - math.log(2 * math.pi))  # -log N(x), per point
    gap = bound - entropy
    se = gap.std().item() / math.sqrt(len(gap))
    assert abs(gap.mean().item()) < 3 * se + 0.01
    assert bound.mean().item() == pytest.approx(math.log(2 * math.pi * math.e), abs=0.1)


@pytest.fixture(scope="module")
def tiny_fits():
    from playground.compare.train import build_task, resolve_config
    from playground.core.training import LoopConfig, train_loop

    cfg = resolve_config("tiny", {"steps": 40, "lr": 1e-2})
    loop = LoopConfig(max_steps=40, log_every=40, progress=False, device="cpu",
                      checkpoints=False)
    task = build_task(cfg, loop)
    train_loop(loop, task)
    return {k: m.eval() for k, m in task.models.items()}


def test_bounds_and_exact_nll_never_below_the_entropy(tiny_fits):
    """E_p[-log q] ≥ H(p) for any density q, and the VAE / diffusion bounds lie above -log q:
    each, per point paired with -log p, is ≥ the entropy up to 3 standard errors."""
    x = _g8(1500, 11)
    log_p = get_target("8gaussians").log_prob(x).double()
    entropy = target_entropy("8gaussians", x)
    assert entropy.value == pytest.approx(2.834, abs=0.05)
    for family in ("vae", "diffusion", "flow", "ar"):
        lik = likelihood(family, tiny_fits[family], x)
        assert lik.value >= entropy.value - 3 * lik.se, (family, lik, entropy)
        assert lik.kind == ("exact" if family in ("flow", "ar") else lik.kind)
    vae = likelihood("vae", tiny_fits["vae"], x)
    assert vae.kind.startswith("bound") and vae.tighter.value <= vae.value + 3 * vae.se
    assert vae.tighter.value >= entropy.value - 3 * vae.tighter.se
    assert log_p.isfinite().all()


def test_gan_has_no_likelihood(tiny_fits):
    lik = likelihood("gan", tiny_fits["gan"], _g8(50, 0))
    assert lik.kind == "none" and lik.value is None and lik.note == NO_NLL_REASON
