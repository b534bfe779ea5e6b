"""Judge any flow of the family against an energy (no gradio): the picked flow's density
beside the energy's, and a ``FitReport`` (reverse KL up to log Z, the true KL with log Z by
quadrature, KL(p‖q), the ESS of the importance weights p̃/q, modes covered).

Works for every flow the registry resolves: a shipped one (fitted to samples), one fitted to
an energy in this session, or a hub id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from playground.core import registry
from playground.core.errors import check_range
from playground.core.plot2d import density_image, draw_points
from playground.core.repro import make_record, save_png
from playground.core.seeding import make_generator
from playground.core.sessions import unique_output
from playground.flow import FAMILY
from playground.flow.energies import get_energy
from playground.flow.energy_live import energy_image
from playground.flow.inference import IMAGE_SIZE, load_flow
from playground.flow.metrics import density_grid
from playground.flow.reverse import fit_report


@dataclass
class EnergyJudgement:
    """What ``judge_flow`` shows: two PNGs carrying the reproducibility record, and metrics."""

    energy: str  # PNG path: the energy p̃ with the flow's samples on it (white)
    density: str  # PNG path: the flow's density q
    metrics: dict  # FitReport.as_dict() + flow, energy, n_samples, seed, record


def judge_flow(energy: str, flow: str, n_samples: int = 4000, seed: int = 0) -> EnergyJudgement:
    """How well the flow ``flow`` matches ``energy``: ``n_samples`` samples of q (and of p)
    drawn from ``seed`` (same seed ⇒ same pictures and numbers)."""
    target = get_energy(energy)
    n_samples = check_range("Number of samples", n_samples, 100, 20_000, integer=True)
    entry = registry.resolve(FAMILY, flow)
    model = load_flow(entry)
    report = fit_report(model, target, n=n_samples, seed=seed)
    with torch.no_grad():
        shown = model.sample(min(n_samples, 1500), make_generator(seed)).cpu().numpy()
    logq, mass = density_grid(model, 128)
    params = {"energy": energy, "n_samples": n_samples, "view": "energy judge"}
    record = make_record(FAMILY, entry.name, entry.source, params, seed,
                         revision=registry.revision(entry))
    picture = draw_points(energy_image(energy, IMAGE_SIZE), shown, color=(255, 255, 255),
                          radius=1.0)
    energy_png = save_png(picture, record, unique_output(FAMILY, f"energy-{energy}-seed{seed}",
                                                         ".png"))
    density_png = save_png(density_image(logq.numpy(), IMAGE_SIZE), record,
                           unique_output(FAMILY, f"energy-density-{energy}-seed{seed}", ".png"))
    metrics = {"flow": entry.name, "energy": energy, **report.as_dict(),
               "mass_in_box": round(mass, 4), "n_samples": n_samples, "seed": seed,
               "record": record}
    return EnergyJudgement(str(energy_png), str(density_png), metrics)
