"""The two training stages on tiny configs: losses go down, every parameter learns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.core.training import LoopConfig, train_loop
from playground.txt2img import diffusion
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img import vae_stage as V
from playground.txt2img.shapes import (
    images_to_tensor,
    latent_object_weights,
    make_dataset,
    resize_images,
)


def _tiny(**changes) -> T.TrainConfig:
    return dataclasses.replace(T.PRESETS["tiny"], **changes)


def _data(cfg: T.TrainConfig):
    raw, scenes = make_dataset(8, seed=0)
    return resize_images(images_to_tensor(raw), cfg.model.image_size), scenes


def _loop(steps: int) -> LoopConfig:
    return LoopConfig(max_steps=steps, device="cpu", progress=False, log_every=steps)


def test_vae_stage_lowers_reconstruction_loss():
    cfg = _tiny(vae_batch=8, vae_lr=3e-3)
    images, _ = _data(cfg)
    task = V.vae_task(cfg, images, seed=0)
    vae = task.models["vae"]

    def recon_error() -> float:
        with torch.no_grad():
            return F.mse_loss(vae.decode(vae.encode(images).latent_dist.mean).sample,
                              images).item()
    before = recon_error()
    train_loop(_loop(40), task)
    assert recon_error() < 0.7 * before


def test_unet_stage_lowers_diffusion_loss_and_all_parameters_learn():
    cfg = _tiny(batch_size=8, lr=3e-3, warmup=1)
    images, scenes = _data(cfg)
    vae = M.build_vae(cfg.model)
    latents = V.encode_latents(vae, images)
    latents = latents * V.set_scaling_factor(vae, latents)
    tokenizer = M.build_tokenizer(cfg.model)
    task = T.build_task(cfg, vae, tokenizer, latents, [s.caption for s in scenes], seed=0)
    unet, text = task.models["unet"], task.models["text_encoder"]
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, 1000, (len(latents),), generator=gen)
    scheduler = M.build_scheduler(cfg.model)
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = diffusion.training_target(scheduler, latents, noise, t)
    ids = tokenizer([s.caption for s in scenes], padding="max_length", return_tensors="pt",
                    max_length=tokenizer.model_max_length).input_ids

    def loss() -> torch.Tensor:
        zt = a.sqrt() * latents + (1 - a).sqrt() * noise
        return F.mse_loss(unet(zt, t, text(ids)[0]).sample, target)
    loss().backward()
    missing = [n for n, p in [*unet.named_parameters(), *text.named_parameters()]
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    # the pooled projection is unused by SD; position rows past the caption length stay idle
    assert not [n for n in missing if "position" not in n and "final_layer_norm" not in n]
    unet.zero_grad(set_to_none=True)
    text.zero_grad(set_to_none=True)
    with torch.no_grad():
        before = loss().item()
    result = train_loop(_loop(60), task)
    with torch.no_grad():
        after = loss().item()
    assert after < 0.8 * before, (before, after, result.history)
    ema = task.models["ema_unet"]
    assert not torch.equal(next(ema.parameters()), next(unet.parameters()))


def test_loss_weights_keep_high_noise_and_cap_low_noise():
    alpha_bar = torch.tensor([1e-6, 0.5, 5 / 6, 0.99])  # SNR 1e-6, 1, 5, 99
    v = diffusion.loss_weights(alpha_bar, gamma=5.0, v_prediction=True)
    eps = diffusion.loss_weights(alpha_bar, gamma=5.0, v_prediction=False)
    assert torch.allclose(v[:3], torch.ones(3), atol=1e-5)  # plain v loss up to SNR = γ
    assert torch.isclose(v[3], torch.tensor(6 / 100), atol=1e-4)  # (γ + 1) / (SNR + 1)
    assert torch.allclose(eps, torch.tensor([1.0, 1.0, 1.0, 5 / 99]), atol=1e-4)
    assert torch.equal(diffusion.loss_weights(alpha_bar, 0.0, True), torch.ones(4))


def test_scheduler_starts_from_almost_pure_noise_and_swaps_keep_it():
    from playground.txt2img.inference import SCHEDULERS, with_scheduler

    cfg = T.PRESETS["shapes"].model
    scheduler = M.build_scheduler(cfg)
    assert scheduler.alphas_cumprod[-1].item() == pytest.approx(cfg.min_alpha_bar, rel=1e-3)
    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    for name in SCHEDULERS:
        sched = with_scheduler(pipe, name).scheduler
        sched.set_timesteps(4)
        assert int(sched.timesteps[0]) == 999, name  # "trailing": the first step is t = 999
        assert sched.config.prediction_type == "v_prediction"
        assert torch.allclose(sched.alphas_cumprod, scheduler.alphas_cumprod)


def test_decoder_stage_lowers_reconstruction_error_and_keeps_the_encoder():
    cfg = _tiny(vae_batch=8, decoder_steps=40, decoder_lr=3e-3)
    images, _ = _data(cfg)
    vae = M.build_vae(cfg.model)
    latents = V.encode_latents(vae, images)
    task = V.decoder_task(cfg, vae, images, latents, seed=0)
    tuned = task.models["vae"]

    def recon_error() -> float:
        with torch.no_grad():
            return F.mse_loss(tuned.decode(latents).sample, images).item()
    before = recon_error()
    train_loop(_loop(40), task)
    assert recon_error() < 0.7 * before
    assert torch.equal(V.encode_latents(tuned, images), latents)  # latents unchanged


def test_noised_latents_scale_per_image_within_the_bound():
    gen = torch.Generator().manual_seed(0)
    latents = torch.zeros(400, 4, 8, 8)
    spread = V.noised_latents(latents, 0.5, gen).flatten(1).std(dim=1)  # per image
    assert float(spread.max()) < 0.5 * 1.1 and float(spread.min()) < 0.05
    assert abs(float(spread.mean()) - 0.25) < 0.03  # scales uniform in [0, 0.5]
    assert torch.equal(V.noised_latents(latents, 0.0, gen), latents)


def test_decoder_noise_feeds_the_decoder_noised_latents(monkeypatch):
    cfg = _tiny(vae_batch=8, decoder_steps=2, decoder_noise=0.5)
    images, _ = _data(cfg)
    vae = M.build_vae(cfg.model)
    latents = V.encode_latents(vae, images)
    task = V.decoder_task(cfg, vae, images, latents, seed=0)
    seen = []
    decode = type(task.models["vae"]).decode
    monkeypatch.setattr(type(task.models["vae"]), "decode",
                        lambda self, z, *a, **k: seen.append(z.detach()) or decode(self, z))
    train_loop(_loop(2), task)
    clean = {tuple(row.flatten()[:4].tolist()) for row in latents}
    assert len(seen) == 2 and all(tuple(z[0].flatten()[:4].tolist()) not in clean for z in seen)
    plain = V.decoder_task(_tiny(vae_batch=8, decoder_steps=2), vae, images, latents, seed=0)
    seen.clear()
    monkeypatch.setattr(type(plain.models["vae"]), "decode",
                        lambda self, z, *a, **k: seen.append(z.detach()) or decode(self, z))
    train_loop(_loop(2), plain)
    assert all(tuple(z[0].flatten()[:4].tolist()) in clean for z in seen)
    with pytest.raises(ValueError, match="do not combine"):
        V.decoder_task(cfg, vae, images, latents, seed=0, latent_transform=lambda z, x, g: z)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"decoder_steps": -1}, "decoder_steps"),
    ({"decoder_noise": -0.1}, "decoder_noise"),
    ({"decoder_steps": 2.5}, "whole number"),
    ({"vae_decay_steps": 10**6}, "vae_decay_steps"),
    ({"unet_decay_steps": 10**6}, "unet_decay_steps"),
    ({"snr_gamma": -1.0}, "snr_gamma"),
    ({"timestep_bias_p": 1.5}, "timestep_bias_p"),
    ({"timestep_bias_from": 1000}, "timestep_bias_from"),
    ({"train_text_encoder": "yes"}, "train_text_encoder must be true or false"),
    ({"scenes": "corners"}, "scenes must be one of"),
    ({"object_loss_weight": 0.5}, "object_loss_weight"),
])
def test_bad_training_settings_get_clear_messages(overrides, message):
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        T.resolve_config("shapes", overrides)


def test_vae_lr_decays_along_a_cosine_over_the_last_steps():
    cfg = dataclasses.replace(T.PRESETS["shapes"], vae_steps=100, vae_decay_steps=40)
    assert V.vae_lr_factor(0, cfg) == V.vae_lr_factor(60, cfg) == 1.0
    assert V.vae_lr_factor(80, cfg) == pytest.approx(0.5)
    assert V.vae_lr_factor(100, cfg) == pytest.approx(0.0)


def test_unet_lr_warms_up_then_decays_over_the_last_steps():
    cfg = dataclasses.replace(T.PRESETS["shapes"], warmup=10, unet_steps=100,
                              unet_decay_steps=40)
    assert T.unet_lr_factor(0, cfg) == pytest.approx(0.1)
    assert T.unet_lr_factor(9, cfg) == T.unet_lr_factor(60, cfg) == 1.0
    assert T.unet_lr_factor(80, cfg) == pytest.approx(0.5)
    assert T.unet_lr_factor(100, cfg) == pytest.approx(0.0)
    flat = dataclasses.replace(cfg, unet_decay_steps=0)
    assert T.unet_lr_factor(99, flat) == 1.0


def test_cli_reports_a_bad_setting_without_a_traceback(tmp_path):
    from playground.train import main

    with pytest.raises(SystemExit, match="error: decoder_steps must be between 0"):
        main(["txt2img", "--preset", "tiny", "--set", "decoder_steps=-1",
              "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def _saved_tiny_pipeline(folder, **model_changes):
    cfg = _tiny(model=dataclasses.replace(T.PRESETS["tiny"].model, **model_changes))
    torch.manual_seed(3)
    pipe = M.build_untrained_pipeline(cfg.model)
    M.save_pipeline(pipe, folder)
    return pipe


def _unet_task(cfg: T.TrainConfig, vae, seed: int = 0):
    images, scenes = _data(cfg)
    latents = V.encode_latents(vae, images)
    return T.build_task(cfg, vae, M.build_tokenizer(cfg.model), latents,
                       [s.caption for s in scenes], seed=seed)


def test_frozen_text_encoder_stays_put_while_the_unet_learns(tmp_path):
    base = _saved_tiny_pipeline(tmp_path / "base")
    cfg = T.resolve_config("tiny", {"init_from": str(tmp_path / "base"),
                                    "train_text_encoder": False, "lr": 3e-3})
    task = _unet_task(cfg, base.vae)
    train_loop(_loop(5), task)
    text = task.models["text_encoder"].state_dict()
    assert all(torch.equal(text[k], v) for k, v in base.text_encoder.state_dict().items())
    unet = task.models["unet"].state_dict()
    assert not all(torch.equal(unet[k], v) for k, v in base.unet.state_dict().items())


def test_fine_tune_cli_reuses_the_vae_and_exports_it(tmp_path):
    from playground.train import main

    base = tmp_path / "base"
    main(["txt2img", "--preset", "tiny", "--out", str(base)])
    tuned = tmp_path / "tuned"
    main(["txt2img", "--preset", "tiny", "--out", str(tuned), "--max-steps", "2",
          "--set", f"init_from={base}"])
    assert not (tmp_path / "tuned-vae").exists()  # no VAE stage ran
    for folder in (tuned, T.export_checkpoint("tiny", str(tuned), str(tmp_path / "export"),
                                              {"init_from": str(base)})):
        vae = "vae/diffusion_pytorch_model.safetensors"
        assert (folder / vae).read_bytes() == (base / vae).read_bytes()
        factor = [json.loads((f / "vae/config.json").read_text())["scaling_factor"]
                  for f in (folder, base)]
        assert factor[0] == factor[1] != 1.0  # the factor measured on the base run's latents
        assert (folder / "unet/diffusion_pytorch_model.safetensors").read_bytes() != (
            base / "unet/diffusion_pytorch_model.safetensors").read_bytes()


def test_scene_filter_trains_the_unet_on_one_object_scenes_only(tmp_path):
    from playground.train import main

    cfg = T.resolve_config("tiny", {"n_images": 60, "scenes": "one-object"})
    _, scenes = make_dataset(60, cfg.data_seed)
    keep = T.unet_scenes(cfg, scenes)
    assert keep == [i for i, s in enumerate(scenes) if len(s.objects) == 1]
    assert 0 < len(keep) < 60
    assert T.unet_scenes(T.resolve_config("tiny", {"n_images": 60}), scenes) == list(range(60))
    main(["txt2img", "--preset", "tiny", "--out", str(tmp_path / "run"), "--set", "n_images=60",
          "--set", "scenes=one-object"])
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["train_images"] == len(keep)
    assert summary["config"]["scenes"] == "one-object"


def test_bad_fine_tune_settings_get_clear_messages(tmp_path):
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match="not a pipeline folder"):
        T.resolve_config("tiny", {"init_from": str(tmp_path / "nowhere")})
    base = _saved_tiny_pipeline(tmp_path / "other", unet_channels=(16, 32))
    cfg = T.resolve_config("tiny", {"init_from": str(tmp_path / "other")})
    with pytest.raises(UserInputError, match="does not fit this preset's model"):
        _unet_task(cfg, base.vae)


def test_timestep_bias_draws_the_chosen_share_from_the_noisiest_steps():
    cfg = dataclasses.replace(T.PRESETS["shapes"], timestep_bias_p=0.5, timestep_bias_from=850)
    t = T.sample_timesteps(20000, 1000, cfg, torch.Generator().manual_seed(0))
    assert 0 <= int(t.min()) and int(t.max()) <= 999
    # half from [850, 1000) plus 15 % of the uniform half
    assert float((t >= 850).float().mean()) == pytest.approx(0.575, abs=0.015)
    again = T.sample_timesteps(20000, 1000, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    plain = T.sample_timesteps(20000, 1000, T.PRESETS["shapes"], torch.Generator().manual_seed(0))
    assert float((plain >= 850).float().mean()) == pytest.approx(0.15, abs=0.015)


def test_latent_object_weights_cover_exactly_the_cells_under_an_object():
    from playground.txt2img.shapes import Obj, Scene, render

    scenes = [Scene((Obj("star", "red", "small", "top left"),), "black"),
              Scene((Obj("circle", "white", "large", "bottom right"),), "blue")]
    images = images_to_tensor(np.stack([np.asarray(render(s)) for s in scenes]))
    weights = latent_object_weights(images, 32, 5.0)
    assert weights.shape == (2, 1, 32, 32)
    assert set(weights.unique().tolist()) == {1.0, 5.0}
    # a cell is weighted iff one of its 2x2 pixels differs from the background
    differs = (images - images[..., :1, :1]).abs().sum(1, keepdim=True) > 0.3
    assert torch.equal(weights > 1, F.max_pool2d(differs.float(), 2) > 0)
    small, large = (weights > 1).flatten(1).sum(1).tolist()
    assert 10 < small < large
    assert weights[0, 0, 16:, :].eq(1).all() and weights[1, 0, :16, :].eq(1).all()  # elsewhere


def test_object_loss_weight_reweights_the_unet_loss_and_keeps_its_scale():
    cfg = _tiny(batch_size=8)
    images, scenes = _data(cfg)
    vae = M.build_vae(cfg.model)
    latents = V.encode_latents(vae, images)
    tokenizer = M.build_tokenizer(cfg.model)
    captions = [s.caption for s in scenes]

    def first_loss(weights) -> float:
        task = T.build_task(cfg, vae, tokenizer, latents, captions, seed=0, pixel_weights=weights)
        return train_loop(_loop(1), task).history[0]["loss"]
    plain = first_loss(None)
    assert first_loss(torch.ones(len(latents), 1, *latents.shape[-2:])) == pytest.approx(plain)
    corner = torch.ones(len(latents), 1, *latents.shape[-2:])
    corner[..., :2, :2] = 50.0
    assert first_loss(corner) != pytest.approx(plain, rel=1e-3)


def test_cli_trains_with_the_object_loss_weight(tmp_path):
    from playground.train import main

    losses = {}
    for weight in ("1", "5"):
        out = tmp_path / f"run{weight}"
        main(["txt2img", "--preset", "tiny", "--out", str(out), "--set", "n_images=16",
              "--set", f"object_loss_weight={weight}"])
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["config"]["object_loss_weight"] == float(weight)
        losses[weight] = summary["final_metrics"]["loss"]
    assert losses["5"] != pytest.approx(losses["1"], rel=1e-4)  # the weights reach the loss


@pytest.mark.parametrize("name", sorted(T.PRESETS))
def test_every_preset_passes_the_setting_checks(name):
    # init_from names a run folder that exists only where the chain was trained; the other
    # settings go through the same checks as a --set on the command line
    cfg = T.resolve_config(name, {"init_from": ""})
    assert cfg.unet_decay_steps <= cfg.unet_steps
    assert cfg.init_from == "" and cfg.data_seed >= 0




def test_lr_factors_are_the_numbers_of_the_old_txt2img_copies():
    """core.schedules replaced txt2img's own cosine_factor / tail_decay_factor: same floats."""
    import math

    from playground.core.schedules import cosine

    def old_cosine(done):
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, done))))

    def old_tail(step, total, decay):
        start = total - decay
        return 1.0 if decay <= 0 or step < start else old_cosine((step - start) / decay)

    cfg = dataclasses.replace(T.PRESETS["shapes"], vae_steps=6000, vae_decay_steps=1000)
    for step in (0, 1, 99, 100, 5000, 5001, 5500, 5999, 6000, 7000, 7599, 7600):
        assert V.vae_lr_factor(step, cfg) == old_tail(step, 6000, 1000)
        assert T.unet_lr_factor(step, cfg) == min(1.0, (step + 1) / 100) * old_tail(step, 7600,
                                                                                      1600)
        assert cosine(step / 1000) == old_cosine(step / 1000)  # the decoder stage's factor


def test_noise_maths_round_trips_for_both_prediction_types():
    gen = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    for prediction in ("v_prediction", "epsilon"):
        model = dataclasses.replace(T.PRESETS["tiny"].model, prediction_type=prediction)
        scheduler = M.build_scheduler(model)
        t = torch.tensor([10, 500, 990])
        a = diffusion.alpha_bar(scheduler, t)
        assert a.shape == (3, 1, 1, 1)
        zt = diffusion.add_noise(z0, noise, a)
        assert torch.equal(zt, a.sqrt() * z0 + (1 - a).sqrt() * noise)
        target = diffusion.training_target(scheduler, z0, noise, t)
        x0 = diffusion.predicted_x0(scheduler, zt, target, t)  # the perfect prediction
        assert torch.allclose(x0, z0, atol=1e-3 if prediction == "epsilon" else 1e-5)
        single = diffusion.predicted_x0(scheduler, zt[1:2], target[1:2], 500)  # an int step
        assert torch.allclose(single, x0[1:2])


def test_export_reads_an_old_checkpoint_by_the_tasks_model_order(tmp_path):
    """Checkpoints written before progress.json named the models: UNET_MODELS order."""
    from playground.train import main

    run = tmp_path / "run"
    main(["txt2img", "--preset", "tiny", "--out", str(run)])
    progress = tmp_path / "run-ckpt" / "progress.json"
    record = json.loads(progress.read_text())
    assert record["models"] == list(T.UNET_MODELS)
    progress.write_text(json.dumps({"step": record["step"]}))  # as an old checkpoint
    out = T.export_checkpoint("tiny", str(run), str(tmp_path / "export"))
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert (out / unet).read_bytes() == (run / unet).read_bytes()  # the EMA UNet, as saved
    text = "text_encoder/model.safetensors"
    assert (out / text).read_bytes() == (run / text).read_bytes()


def test_train_cli_without_out_writes_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = T.train_cli("tiny", _loop(1), None, {"n_images": 8})
    assert Path(result.out_dir).resolve() == (tmp_path / "runs" / "txt2img-tiny").resolve()
    assert (tmp_path / "runs" / "txt2img-tiny" / "model_index.json").exists()
