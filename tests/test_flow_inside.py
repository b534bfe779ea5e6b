"""Fitting a flow to an energy (reverse KL): normalisers by quadrature, the fit report on flows
with known answers, a short fit that recovers a Gaussian, seeds, the CLI presets, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from playground.core.errors import UserInputError
from playground.core.training import LoopConfig, train_loop
from playground.flow.energies import ENERGIES, GAUSS_COV, GAUSS_MEAN, get_energy, quadrature
from playground.flow.reverse import effective_sample_size, fit_report
from playground.flow.train import build_task, resolve_config


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_log_z_by_quadrature_matches_the_closed_form(name):
    energy = get_energy(name)
    assert energy.log_z is not None  # every energy here has a known normaliser
    assert quadrature(name).log_z == pytest.approx(energy.log_z, abs=1e-4)


def test_quadrature_of_the_gaussian_gives_its_entropy_and_its_samples():
    quad = quadrature("gaussian")
    cov = torch.tensor(GAUSS_COV, dtype=torch.float64)
    assert quad.entropy == pytest.approx(1 + math.log(2 * math.pi)
                                         + 0.5 * math.log(torch.linalg.det(cov)), abs=1e-4)
    x = quad.sample(100_000, torch.Generator().manual_seed(0)).double()
    assert torch.allclose(x.mean(0), torch.tensor(GAUSS_MEAN, dtype=torch.float64), atol=0.02)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.02)


class GaussianFlow(nn.Module):
    """A stand-in flow with a known density: x = mean + L z, q = N(mean, L Lᵀ)."""

    def __init__(self, mean, cov) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.tensor(mean, dtype=torch.float32))
        self.chol = torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float32))

    def _dist(self):
        return torch.distributions.MultivariateNormal(self.mean, scale_tril=self.chol)

    def rsample_and_log_prob(self, z):
        x = self.mean + z @ self.chol.T
        return x, self._dist().log_prob(x)

    def log_prob(self, x):
        return self._dist().log_prob(x)


def test_fit_report_of_the_exact_density_is_perfect():
    report = fit_report(GaussianFlow(GAUSS_MEAN, GAUSS_COV), get_energy("gaussian"), n=2000)
    # log q − log p̃ = −log Z at every sample: KL(q‖p) = 0 exactly, every weight equal
    assert report.reverse_kl == pytest.approx(0, abs=1e-5)
    assert report.reverse_kl_up_to_log_z == pytest.approx(-report.log_z, abs=1e-5)
    assert report.ess == pytest.approx(1, abs=1e-6)
    assert report.log_z_importance == pytest.approx(report.log_z, abs=1e-5)
    assert report.forward_kl == pytest.approx(0, abs=0.01)  # samples of p by quadrature
    assert report.modes is None


def test_fit_report_of_a_shifted_gaussian_gives_the_analytic_kl():
    shift = torch.tensor([0.3, -0.2])
    mean = (torch.tensor(GAUSS_MEAN) + shift).tolist()
    report = fit_report(GaussianFlow(mean, GAUSS_COV), get_energy("gaussian"), n=20_000, seed=3)
    exact = 0.5 * float(shift @ torch.linalg.inv(torch.tensor(GAUSS_COV)) @ shift)
    assert report.reverse_kl == pytest.approx(exact, abs=4 * report.reverse_kl_se + 1e-3)
    assert report.forward_kl == pytest.approx(exact, abs=0.02)  # KL is symmetric here
    assert 0 < report.ess < 0.99


def test_mode_coverage_of_a_flow_on_one_mode_of_the_mixture():
    energy = get_energy("mixture")
    one_mode = GaussianFlow(energy.modes[0], ((energy.mode_std**2, 0), (0, energy.mode_std**2)))
    report = fit_report(one_mode, energy, n=4000)
    assert (report.modes_covered, report.modes) == (1, 4)
    assert report.mode_shares[0] > 0.95 and max(report.mode_shares[1:]) == 0
    # q = one of 4 equal modes: KL(q‖p) = log 4 (q is p restricted to a quarter of its mass)
    assert report.reverse_kl == pytest.approx(math.log(4), abs=0.01)
    assert report.ess == pytest.approx(1, abs=1e-3) and report.forward_kl > 5


def test_effective_sample_size_bounds():
    assert effective_sample_size(torch.zeros(100)) == pytest.approx(1.0)
    one_heavy = torch.full((100,), -math.inf)
    one_heavy[7] = 0.0
    assert effective_sample_size(one_heavy) == pytest.approx(0.01)


def _fit(preset="energy-tiny", seed=0, **overrides):
    cfg = resolve_config(preset, overrides)
    loop = LoopConfig(max_steps=cfg.steps, log_every=max(1, cfg.steps // 10), seed=seed,
                      progress=False, device="cpu", checkpoints=False)
    task = build_task(cfg, loop)
    return task, train_loop(loop, task)


def test_short_reverse_kl_fit_recovers_a_gaussian_energy():
    task, result = _fit(steps=200, lr=1e-2, batch_size=64, warmup=10)  # ~3 s on one thread
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0] - 0.25  # the loss decreases (from ≈ −1.08 to ≈ −log Z)
    model = task.models["flow"]
    with torch.no_grad():
        x = model.sample(20_000, torch.Generator().manual_seed(1)).double()
    assert torch.allclose(x.mean(0), torch.tensor(GAUSS_MEAN, dtype=torch.float64), atol=0.1)
    assert torch.allclose(torch.cov(x.T), torch.tensor(GAUSS_COV, dtype=torch.float64),
                          atol=0.1)
    last = result.history[-1]
    assert 0 < last["energy_fit_ess"] <= 1 and last["energy_fit_ess"] > 0.7
    assert 0 <= last["energy_fit_reverse_kl"] < 0.1
    # the loss is KL(q‖p) − log Z: adding log Z by quadrature gives the logged KL
    assert last["energy_fit_kl"] == pytest.approx(last["loss"] + quadrature("gaussian").log_z)


def test_same_seed_same_fit_and_the_twin_starts_from_the_same_weights():
    a, _ = _fit(steps=15, compare_samples=True, seed=5)
    b, _ = _fit(steps=15, compare_samples=True, seed=5)
    c, _ = _fit(steps=15, compare_samples=True, seed=6)
    for name in ("flow", "samples_fit"):
        sa, sb = a.models[name].state_dict(), b.models[name].state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    sc = c.models["flow"].state_dict()
    assert not all(torch.equal(sa[k], sc[k]) for k in sc)
    fresh = build_task(resolve_config("energy-tiny", {"compare_samples": True}),
                       LoopConfig(max_steps=1, seed=5))
    first, twin = (fresh.models[k].state_dict() for k in ("flow", "samples_fit"))
    assert all(torch.equal(first[k], twin[k]) for k in first)


@pytest.mark.parametrize("overrides,message", [
    ({"energy": "donut"}, "Unknown energy 'donut'; choose from banana, ring"),
    ({"flow_type": "maf"}, "Unknown flow type 'maf'"),
])
def test_bad_energy_settings_are_refused(overrides, message):
    with pytest.raises(UserInputError, match=message):
        resolve_config("energy", overrides)


@pytest.mark.parametrize("args,message", [
    (("donut", "nsf", 4, 64, 5e-3, 100, 256), "Unknown energy 'donut'"),
    (("ring", "nsf", 4, 64, 5e-3, 5, 256), "Steps must be between 10 and"),
    (("ring", "nsf", 4, 64, 5e-3, 12.5, 256), "Steps must be a whole number"),
    (("ring", "nsf", 4, 64, 5e-3, "many", 256), "Steps must be a number"),
    (("ring", "nsf", 4, 64, 0, 100, 256), "Learning rate must be between"),
    (("ring", "maf", 4, 64, 5e-3, 100, 256), "Flow type must be one of"),
])
def test_live_settings_are_checked(args, message):
    from playground.flow.energy_live import energy_config

    with pytest.raises(UserInputError, match=message):
        energy_config(*args)


def test_cli_energy_preset_saves_the_energy_fit(tmp_path, capsys):
    from playground.flow.model import FlowModel
    from playground.train import main

    out = tmp_path / "flow-energy-tiny"
    result = main(["flow", "--preset", "energy-tiny", "--set", "energy=banana", "--out", str(out),
                   "--checkpoint-every", "0"])
    assert result.steps == 20 and "energy_fit_reverse_kl" in result.last
    model = FlowModel.from_pretrained(str(out))
    assert model.config["target"] == "energy:banana"
    with pytest.raises(SystemExit, match="Unknown energy 'donut'"):
        main(["flow", "--preset", "energy-tiny", "--set", "energy=donut", "--out", str(out)])
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n" + "\n".join(f"{i / 10},{i / 20}" for i in range(30)))
    with pytest.raises(SystemExit, match="uses no data points"):
        main(["flow", "--preset", "energy-tiny", "--data", str(csv), "--out", str(out)])


def test_the_recorded_command_repeats_the_in_browser_fit(tmp_path):
    """The record's command line (preset + --set) trains the same weights as the live run."""
    import shlex

    from playground.flow.energy_live import build_run, cli_command, energy_config
    from playground.flow.model import FlowModel
    from playground.train import main

    cfg = energy_config("wave", "realnvp", 2, 16, 1e-2, 20, 32, compare=False)
    command = cli_command(cfg, seed=7)
    assert "--set compare_samples=false" in command and "--set energy=wave" in command
    argv = shlex.split(command)[3:]  # after "python -m playground.train"
    main([*argv, "--out", str(tmp_path / "cli"), "--checkpoint-every", "0"])
    loop, task = build_run(str(tmp_path / "live"), cfg, 7)
    train_loop(loop, task)
    cli, live = (FlowModel.from_pretrained(str(tmp_path / d)).state_dict() for d in ("cli", "live"))
    assert all(torch.equal(cli[k], live[k]) for k in cli)


@pytest.mark.slow  # ~7 s of CPU: two flows, 200 steps
def test_the_mixture_shows_reverse_kl_seeking_a_mode_and_forward_kl_covering_all():
    """The one sentence, measured: on 4 separated Gaussians the fit to the energy settles on
    one mode (KL(q‖p) ≈ log 4) while its twin fitted to samples covers all four."""
    task, result = _fit("energy", steps=200, depth=2, width=32, compare_samples=True)
    last = result.history[-1]
    assert last["energy_fit_modes_covered"] < 4 and last["sample_fit_modes_covered"] == 4
    assert last["energy_fit_forward_kl"] > last["sample_fit_forward_kl"] + 3  # missed mass
    assert last["energy_fit_reverse_kl"] == pytest.approx(math.log(4), abs=0.1)
