"""Picture-quality measures (artefacts.py) on known answers, and the VAE's locality term."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from playground.core.training import LoopConfig, train_loop
from playground.txt2img import artefacts as A
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img import vae_stage as V
from playground.txt2img.shapes import (
    PALETTE,
    Obj,
    Scene,
    images_to_tensor,
    make_dataset,
    render,
    resize_images,
)

CIRCLE = Scene((Obj("circle", "red", "large", "center"),), "black")
SMALL = Scene((Obj("star", "yellow", "small", "top left"),), "blue")


def _image(scene: Scene) -> np.ndarray:
    return np.asarray(render(scene)).astype(np.int16)


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def _trips(result: A.Artefacts) -> set[str]:
    return {m for m, ok in result.passes().items() if not ok}


def test_the_datasets_own_images_score_zero_on_every_measure():
    images, scenes = make_dataset(120, seed=4)
    summary = A.score(scenes, list(images))
    assert (summary.tint, summary.frame, summary.halo, summary.ghost) == (0, 0, 0, 0)
    assert summary.clean == 1.0 and summary.n == 120
    plain = [Scene((), b) for b in ("black", "white", "green")]
    assert all(A.measure(s, render(s)) == A.Artefacts(0, 0, 0, 0) for s in plain)


def test_a_tinted_background_trips_tint_alone_and_reads_its_size():
    image = _image(CIRCLE)
    background = (image == PALETTE["black"]).all(-1)
    image[background] += np.array([0, 24, 32], dtype=np.int16)  # black drawn dark teal
    result = A.measure(CIRCLE, _u8(image))
    assert result.tint == pytest.approx(40.0, abs=0.5)  # |(0, 24, 32)|
    assert _trips(result) == {"tint"}


def test_a_frame_a_few_pixels_in_trips_frame_not_tint():
    image = _image(SMALL)
    for d in (3, 4):  # a two-pixel line, 3 px in from the edge, on every side
        image[d, d:64 - d] = image[63 - d, d:64 - d] = PALETTE["white"]
        image[d:64 - d, d] = image[d:64 - d, 63 - d] = PALETTE["white"]
    result = A.measure(SMALL, _u8(image))
    assert result.frame > 100 and result.tint == 0.0
    assert _trips(result) == {"frame"}


def test_a_ring_around_the_object_trips_halo():
    image = _image(CIRCLE)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    image[(r > 14.8) & (r < 16.0)] = PALETTE["gray"]  # a gray ring 2-3 px outside the disc
    result = A.measure(CIRCLE, _u8(image))
    assert result.halo > 40 and result.tint < A.THRESHOLDS.tint
    assert _trips(result) == {"halo"}


def test_a_pale_copy_beside_the_object_trips_ghost_and_reads_its_share():
    image = _image(SMALL)
    star = (image == PALETTE["yellow"]).all(-1)
    ghost = np.roll(star, (24, 24), axis=(0, 1))  # the same star, 24 px down-right
    blue, yellow = np.array(PALETTE["blue"]), np.array(PALETTE["yellow"])
    image[ghost] = (0.5 * blue + 0.5 * yellow).round()  # at half strength
    result = A.measure(SMALL, _u8(image))
    # stray paint per ghost pixel: half the yellow-blue distance less the floor; per star
    # pixel: the whole distance
    yellow_blue = float(np.linalg.norm(yellow - blue))
    expected = (0.5 * yellow_blue - A.GHOST_FLOOR) / yellow_blue
    assert result.ghost == pytest.approx(expected, abs=0.02)
    assert "ghost" in _trips(result)


def test_two_objects_of_other_colours_are_not_each_others_mass():
    scene = Scene((Obj("star", "green", "large", "top left"),
                   Obj("diamond", "yellow", "large", "top right")), "blue")
    assert A.measure(scene, render(scene, random.Random(0))) == A.Artefacts(0, 0, 0, 0)


def test_summary_counts_the_share_of_images_within_each_threshold():
    clean, tinted = A.Artefacts(0, 0, 0, 0), A.Artefacts(50, 0, 0, 0)
    summary = A.summarise([clean, clean, tinted, clean])
    assert summary.pass_tint == 0.75 and summary.pass_frame == 1.0 and summary.clean == 0.75
    assert summary.tint == pytest.approx(12.5)
    with pytest.raises(ValueError):
        A.summarise([])


def test_latent_spread_is_the_share_of_departure_outside_the_footprint():
    z_plain = torch.zeros(1, 4, 8, 8)
    footprint = torch.zeros(1, 1, 8, 8)
    footprint[..., 2:4, 2:4] = 1
    z = z_plain.clone()
    z[..., 2:4, 2:4] = 1.0  # 4 cells x 4 channels inside
    assert V.latent_spread(z, z_plain, footprint).item() == pytest.approx(0.0)
    z[..., 6, 6] = 2.0  # a "tail" cell: 4 channels x 4 = 16, as much as inside
    assert V.latent_spread(z, z_plain, footprint).item() == pytest.approx(0.5, abs=1e-4)


def test_object_footprint_covers_the_object_and_grows():
    image = np.full((1, 16, 16, 3), PALETTE["black"], np.uint8)
    image[0, 4:6, 4:6] = PALETTE["red"]
    x = images_to_tensor(image)
    core = V.object_footprint(x, 8, grow=0)[0, 0]
    assert core.sum() == 1 and core[2, 2] == 1
    assert V.object_footprint(x, 8, grow=1)[0, 0].sum() == 9


def test_vae_with_the_locality_term_and_one_norm_group_trains_and_logs_it():
    tiny = T.resolve_config("tiny", {"locality_weight": 1.0, "vae_batch": 4})
    cfg = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, vae_norm_groups=1))
    T.check_config(cfg)
    assert M.build_vae(cfg.model).config.norm_num_groups == 1
    raw, _ = make_dataset(8, seed=0)
    images = resize_images(images_to_tensor(raw), cfg.model.image_size)
    task = V.vae_task(cfg, images, seed=0)
    result = train_loop(LoopConfig(max_steps=4, device="cpu", progress=False, log_every=1), task)
    assert "vae_spread" in result.last and 0.0 <= result.last["vae_spread"] <= 1.0
    vae = task.models["vae"]
    x = images[:4]
    loss = V.locality_loss(vae, x, vae.encode(x).latent_dist.mean)
    loss.backward()
    assert 0.0 <= loss.item() <= 1.0
    assert all(p.grad is not None for p in vae.encoder.parameters() if p.requires_grad)


def test_bad_locality_settings_get_clear_messages():
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match="locality_weight"):
        T.resolve_config("tiny", {"locality_weight": -1})
    tiny = T.PRESETS["tiny"]
    with pytest.raises(UserInputError, match="vae_norm_groups"):
        T.check_config(dataclasses.replace(
            tiny, model=dataclasses.replace(tiny.model, vae_norm_groups=64)))
    with pytest.raises(UserInputError, match="must divide every VAE width"):
        T.check_config(dataclasses.replace(
            tiny, model=dataclasses.replace(tiny.model, vae_norm_groups=3)))
    assert tiny.locality_weight == 0.0 and tiny.model.vae_norm_groups == 0


def test_unet_steps_zero_trains_the_vae_stages_alone(tmp_path):
    out = tmp_path / "run"
    loop = LoopConfig(out_dir=str(out), device="cpu", progress=False, checkpoint_every=2)
    result = T.train_cli("tiny", loop, None, {"unet_steps": 0, "decoder_steps": 2,
                                              "locality_weight": 0.5})
    assert result.out_dir == Path(f"{out}-vae-decoder")
    assert (result.out_dir / "config.json").exists()
    assert (Path(f"{out}-vae") / "config.json").exists()
    assert not out.exists()  # no UNet stage, no pipeline
    progress = json.loads((Path(f"{out}-vae-ckpt") / "progress.json").read_text())
    assert progress["step"] == T.PRESETS["tiny"].vae_steps


def test_evaluate_reports_the_artefact_measures_beside_adherence():
    from playground.txt2img.evaluate import evaluate

    torch.manual_seed(0)
    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    result = evaluate(pipe, 2, steps=2)
    for name in ("held_out", "seen", "two_objects"):
        measures = result[name]["artefacts"]
        assert measures["n"] == result[name]["n"] and 0 <= measures["clean"] <= 1
        assert set(A.MEASURES) <= set(measures) and "colour+shape" in result[name]
