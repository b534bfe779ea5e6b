"""Plain functions of the Compare tab (no gradio): load a fit folder, score five fitted models
alike on held-out points, the shipped comparison (read instantly from its folder), and the
table rows. Each returns small dataclasses of plain values.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from playground.compare import FAMILIES, FAMILY, LABELS
from playground.core import registry
from playground.core.errors import UserInputError, check_range
from playground.core.repro import make_record
from playground.data.targets2d import get_target

if TYPE_CHECKING:  # the scores pull in torch, diffusers and zuko: imported where used
    import torch

    from playground.compare.metrics import FamilyScore

EVAL_SEED = 31337  # held-out points of a built-in target: never the training or test draws
RESULTS = "results.json"
COLLAPSED_LATENT_SCALE = 0.05  # the deliberately collapsed GAN: z shrunk 20× (truncation)


def model_class(family: str):
    from playground.compare.diffusion import DiffusionMLP
    from playground.compare.model import ARModel, GANModel, VAEModel
    from playground.flow.model import FlowModel

    return {"gan": GANModel, "vae": VAEModel, "flow": FlowModel, "diffusion": DiffusionMLP,
            "ar": ARModel}[family]


def load_fit_folder(source: str | Path) -> dict:
    """{family: model in eval mode} from a fit folder (``<source>/<family>/``, HF format)."""
    folder = Path(source)
    return {family: model_class(family).from_pretrained(folder / family).eval()
            for family in FAMILIES if (folder / family / "config.json").is_file()}


def load_fits(name: str | registry.ModelEntry) -> dict:
    """The five fitted models of a registry entry (shipped or trained in this session), cached."""
    return registry.load_model(FAMILY, name, load_fit_folder)


def train_seconds(folder: str | Path) -> dict[str, float]:
    """Each family's own training time, as the run recorded it."""
    out = {}
    for family in FAMILIES:
        path = Path(folder) / family / "family_summary.json"
        if path.is_file():
            out[family] = json.loads(path.read_text())["train_s"]
    return out


@dataclass
class ScoreRow:
    """One family's line of the results table (nats; energy distance in squared units)."""

    family: str
    label: str
    distance: float
    distance_se: float
    nll_kind: str  # exact | bound (-ELBO) | bound (variational) | none
    nll: float | None = None
    nll_se: float | None = None
    iwae: float | None = None  # the VAE's importance-weighted bound
    modes_covered: int | None = None
    modes_total: int | None = None
    mode_counts: list[int] | None = None
    train_s: float | None = None
    samples_per_s: float = 0.0
    note: str = ""

    def table_row(self) -> dict:
        nll = ("none" if self.nll is None else
               f"{self.nll:.3f} ± {self.nll_se:.3f} ({self.nll_kind})")
        if self.iwae is not None:
            nll += f"; IWAE {self.iwae:.3f}"
        modes = "—" if self.modes_total is None else f"{self.modes_covered}/{self.modes_total}"
        return {"family": self.label,
                "energy distance ± SE": f"{self.distance:.4f} ± {self.distance_se:.4f}",
                "NLL or bound (nats)": nll, "modes covered": modes,
                "train time (s)": "—" if self.train_s is None else f"{self.train_s:.1f}",
                "samples/s": f"{self.samples_per_s:,.0f}",
                "samples per mode": "—" if self.mode_counts is None else str(self.mode_counts)}


def to_row(score: FamilyScore, label: str, train_s: float | None) -> ScoreRow:
    lik, cov = score.likelihood, score.coverage
    return ScoreRow(score.family, label, round(score.distance.value, 5),
                    round(score.distance.se, 5), lik.kind,
                    None if lik.value is None else round(lik.value, 4),
                    None if lik.se is None else round(lik.se, 4),
                    None if lik.tighter is None else round(lik.tighter.value, 4),
                    cov.covered if cov else None, cov.total if cov else None,
                    cov.counts if cov else None, train_s, round(score.samples_per_s, 1),
                    lik.note)


def held_out_points(target: str, n: int, seed: int = EVAL_SEED) -> torch.Tensor:
    import torch

    return get_target(target).sample(n, torch.Generator().manual_seed(seed))


def score_models(models: dict, held_out: torch.Tensor, target: str, *, seed: int = 0,
                 train_s: dict | None = None, collapsed_gan: bool = False) -> list[ScoreRow]:
    """Every family scored on the same held-out points; optionally the GAN once more with its
    latent shrunk (``COLLAPSED_LATENT_SCALE``): a deliberately collapsed sampler to compare."""
    from playground.compare.metrics import score_family

    train_s = train_s or {}
    rows = [to_row(score_family(f, models[f], held_out, target, seed=seed), LABELS[f],
                   train_s.get(f)) for f in FAMILIES if f in models]
    if collapsed_gan and "gan" in models:
        score = score_family("gan", models["gan"], held_out, target, seed=seed,
                             latent_scale=COLLAPSED_LATENT_SCALE)
        row = to_row(score, f"GAN, z × {COLLAPSED_LATENT_SCALE} (collapsed on purpose)", None)
        row.family = "gan-collapsed"
        rows.append(row)
    return rows


@dataclass
class Comparison:
    """A scored comparison: table rows, the panels (PNG paths, family order), the record."""

    target: str
    rows: list[ScoreRow]
    panels: dict[str, str] = field(default_factory=dict)
    entropy: float | None = None  # of the target on the held-out points (nats), where known
    record: dict = field(default_factory=dict)

    def table(self) -> list[dict]:
        return [row.table_row() for row in self.rows]

    def as_json(self) -> dict:
        return {"target": self.target, "entropy": self.entropy,
                "rows": [asdict(r) for r in self.rows], "record": self.record}


def _check_target(target: str) -> str:
    get_target(target)  # an unknown name is refused with the list
    from playground.compare import SHIPPED_TARGETS

    if target not in SHIPPED_TARGETS:
        raise UserInputError(f"No shipped fits for {target!r}.")
    return target


def shipped_comparison(target: str) -> Comparison:
    """The shipped fits on ``target`` as scored by their model card (read, not recomputed)."""
    from playground.compare import shipped_name

    entry = registry.resolve(FAMILY, shipped_name(_check_target(target)))
    path = entry.path / RESULTS if entry.is_local else None
    if path is None or not path.is_file():
        raise UserInputError(f"The shipped fits for {target!r} have no {RESULTS}; score them.")
    data = json.loads(path.read_text())
    panels = {f: str(entry.path / f"panel-{f}.png") for f in FAMILIES
              if (entry.path / f"panel-{f}.png").is_file()}
    return Comparison(target, [ScoreRow(**r) for r in data["rows"]], panels,
                      data.get("entropy"), data.get("record", {}))


def score_shipped(target: str, n_eval: int = 2000, seed: int = 0) -> Comparison:
    """Score the shipped fits again on ``n_eval`` fresh held-out points (the /compare_score
    route): the table and a reproducibility record, no pictures."""
    from playground.compare import shipped_name
    from playground.compare.metrics import target_entropy

    n_eval = check_range("Held-out points", n_eval, 100, 20_000, integer=True)
    entry = registry.resolve(FAMILY, shipped_name(_check_target(target)))
    models = load_fits(entry)
    held = held_out_points(target, n_eval, EVAL_SEED + seed)
    t0 = time.perf_counter()
    rows = score_models(models, held, target, seed=seed,
                        train_s=train_seconds(entry.path) if entry.is_local else None,
                        collapsed_gan=target == "8gaussians")
    entropy = target_entropy(target, held)
    record = make_record(FAMILY, entry.name, entry.source,
                         {"target": target, "n_eval": n_eval, "held_out_seed": EVAL_SEED + seed,
                          "score_s": round(time.perf_counter() - t0, 2)}, seed)
    return Comparison(target, rows, {}, None if entropy is None else round(entropy.value, 4),
                      record)
