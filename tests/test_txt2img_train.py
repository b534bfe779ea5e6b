"""The two training stages on tiny configs: losses go down, every parameter learns."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.core.training import LoopConfig, train_loop
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img.shapes import make_dataset


def _tiny(**changes) -> T.TrainConfig:
    return dataclasses.replace(T.PRESETS["tiny"], **changes)


def _data(cfg: T.TrainConfig):
    raw, scenes = make_dataset(8, seed=0)
    return T.resize_images(T.images_to_tensor(raw), cfg.model.image_size), scenes


def _loop(steps: int) -> LoopConfig:
    return LoopConfig(max_steps=steps, device="cpu", progress=False, log_every=steps)


def test_vae_stage_lowers_reconstruction_loss():
    cfg = _tiny(vae_batch=8, vae_lr=3e-3)
    images, _ = _data(cfg)
    task = T.vae_task(cfg, images, seed=0)
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
    latents = T.encode_latents(vae, images)
    latents = latents * T.set_scaling_factor(vae, latents)
    tokenizer = M.build_tokenizer(cfg.model)
    task = T.unet_task(cfg, vae, tokenizer, latents, [s.caption for s in scenes], seed=0)
    unet, text = task.models["unet"], task.models["text_encoder"]
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, 1000, (len(latents),), generator=gen)
    scheduler = M.build_scheduler(cfg.model)
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = M.training_target(scheduler, latents, noise, t)
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
    v = T.loss_weights(alpha_bar, gamma=5.0, v_prediction=True)
    eps = T.loss_weights(alpha_bar, gamma=5.0, v_prediction=False)
    assert torch.allclose(v[:3], torch.ones(3), atol=1e-5)  # plain v loss up to SNR = γ
    assert torch.isclose(v[3], torch.tensor(6 / 100), atol=1e-4)  # (γ + 1) / (SNR + 1)
    assert torch.allclose(eps, torch.tensor([1.0, 1.0, 1.0, 5 / 99]), atol=1e-4)
    assert torch.equal(T.loss_weights(alpha_bar, 0.0, True), torch.ones(4))


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
    latents = T.encode_latents(vae, images)
    task = T.decoder_task(cfg, vae, images, latents, seed=0)
    tuned = task.models["vae"]

    def recon_error() -> float:
        with torch.no_grad():
            return F.mse_loss(tuned.decode(latents).sample, images).item()
    before = recon_error()
    train_loop(_loop(40), task)
    assert recon_error() < 0.7 * before
    assert torch.equal(T.encode_latents(tuned, images), latents)  # latents unchanged


@pytest.mark.parametrize(("overrides", "message"), [
    ({"decoder_steps": -1}, "decoder_steps"),
    ({"decoder_steps": 2.5}, "whole number"),
    ({"vae_decay_steps": 10**6}, "vae_decay_steps"),
    ({"unet_decay_steps": 10**6}, "unet_decay_steps"),
    ({"snr_gamma": -1.0}, "snr_gamma"),
    ({"timestep_bias_p": 1.5}, "timestep_bias_p"),
    ({"timestep_bias_from": 1000}, "timestep_bias_from"),
    ({"reinit_scale": 0}, "reinit_scale"),
    ({"reinit_words": "top"}, "reinit_words must be a list"),
    ({"train_text_encoder": "yes"}, "train_text_encoder must be true or false"),
    ({"scenes": "corners"}, "scenes must be one of"),
    ({"object_loss_weight": 0.5}, "object_loss_weight"),
    ({"shape_swap_p": 1.5}, "shape_swap_p"),
    ({"decoder_tail_p": -0.1}, "decoder_tail_p"),
    ({"decoder_only": "yes"}, "decoder_only must be true or false"),
])
def test_bad_training_settings_get_clear_messages(overrides, message):
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        T.resolve_config("shapes", overrides)


def test_vae_lr_decays_along_a_cosine_over_the_last_steps():
    cfg = dataclasses.replace(T.PRESETS["shapes"], vae_steps=100, vae_decay_steps=40)
    assert T.vae_lr_factor(0, cfg) == T.vae_lr_factor(60, cfg) == 1.0
    assert T.vae_lr_factor(80, cfg) == pytest.approx(0.5)
    assert T.vae_lr_factor(100, cfg) == pytest.approx(0.0)


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
    latents = T.encode_latents(vae, images)
    return T.unet_task(cfg, vae, M.build_tokenizer(cfg.model), latents,
                       [s.caption for s in scenes], seed=seed)


def test_fine_tune_starts_from_a_pipeline_and_redraws_only_the_named_words(tmp_path):
    from playground.txt2img.shapes import caption_words

    base = _saved_tiny_pipeline(tmp_path / "base")
    cfg = T.resolve_config("tiny", {"init_from": str(tmp_path / "base"),
                                    "reinit_words": ("top", "left"), "reinit_scale": 2.0})
    task = _unet_task(cfg, base.vae)
    for name in ("unet", "ema_unet"):
        tuned = task.models[name].state_dict()
        assert all(torch.equal(tuned[k], v) for k, v in base.unet.state_dict().items())
    table = task.models["text_encoder"].get_input_embeddings().weight.detach()
    old = base.text_encoder.get_input_embeddings().weight.detach()
    assert torch.equal(task.models["ema_text_encoder"].get_input_embeddings().weight, table)
    changed = sorted(int(i) for i in (table != old).any(dim=1).nonzero())
    tok = base.tokenizer
    words = sorted(tok.convert_tokens_to_ids(f"{w}</w>") for w in ("top", "left"))
    assert changed == words
    new_top, new_left = table[words]
    assert not torch.allclose(new_top, new_left)
    caption_rows = [tok.convert_tokens_to_ids(f"{w}</w>") for w in caption_words()]
    mean_norm = float(old[caption_rows].norm(dim=1).mean())
    assert table[words].norm(dim=1).tolist() == pytest.approx([2 * mean_norm] * 2, rel=1e-5)
    # same seed, same fresh vectors: a fine-tune is reproducible
    again = _unet_task(cfg, base.vae).models["text_encoder"].get_input_embeddings().weight
    assert torch.equal(again, table)


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
          "--set", f"init_from={base}", "--set", 'reinit_words=["center"]'])
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
    from playground.txt2img.shapes import make_dataset

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
    _saved_tiny_pipeline(tmp_path / "base")
    cfg = T.resolve_config("tiny", {"init_from": str(tmp_path / "base"),
                                    "reinit_words": ("zebra",)})
    with pytest.raises(UserInputError, match="'zebra' is not one token"):
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


def test_position_probe_scores_a_named_corner_and_chance():
    from playground.txt2img.position_probe import corner_probe, quadrant_hits

    placed = torch.zeros(4, 3, 8, 8)
    for i, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)),
                                      (slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))]):
        placed[i, :, rows, cols] = 1.0
    assert quadrant_hits(placed) == 4
    assert quadrant_hits(placed[[1, 0, 3, 2]]) == 0  # every object in the wrong corner
    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    result = corner_probe(pipe, n_noise=2)
    assert result["total"] == 24 and 0 <= result["hits"] <= 24
    assert corner_probe(pipe, n_noise=2) == result  # same seed, same figure


def test_focused_fit_trains_a_copy_and_reports_loss_and_accuracy():
    from playground.txt2img.position_probe import focused_fit

    cfg = T.PRESETS["tiny"].model
    pipe = M.build_untrained_pipeline(dataclasses.replace(cfg, image_size=64))
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    fitted, history = focused_fit(pipe, 4, every=2, batch=4)
    assert [h[0] for h in history] == [0, 2, 4]
    assert any(not torch.equal(v, fitted.state_dict()[k]) for k, v in before.items())
    _, mixed = focused_fit(pipe, 4, every=2, batch=4, diverse_share=0.5)
    assert mixed[0][2] == history[0][2]  # the same copy at step 0
    assert mixed[1][1] != history[1][1]  # other scenes in the batch change the training
    assert all(0.0 <= acc <= 1.0 for _, _, acc in history)
    assert history[1][1] > 0
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in before.items())


def test_encoder_probe_reads_the_corner_only_where_the_encoder_carries_it():
    from playground.txt2img.position_probe import encoder_probe

    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    table = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for word in ("top", "bottom", "left", "right"):  # equal embeddings: no corner signal
            table[T.word_token(pipe.tokenizer, word)] = table[T.word_token(pipe.tokenizer, "a")]
    blind = encoder_probe(pipe, n=600)
    assert max(blind.values()) < 0.45  # chance is 0.25
    with torch.no_grad():
        for i, word in enumerate(("top", "bottom", "left", "right")):
            table[T.word_token(pipe.tokenizer, word)] = 3.0 * torch.eye(table.shape[1])[i]
    seeing = encoder_probe(pipe, n=600)
    assert seeing.keys() == blind.keys() and max(seeing.values()) > 0.9
    assert encoder_probe(pipe, n=600) == seeing  # deterministic


@pytest.mark.parametrize(("args", "message"), [
    (["--fit-steps", "-1"], "--fit-steps must be 0"),
    (["--diverse-share", "1.0"], "--diverse-share must be in"),
    (["--diverse-share", "-0.1"], "--diverse-share must be in"),
])
def test_position_probe_cli_refuses_bad_values(args, message, capsys):
    from playground.txt2img.position_probe import main

    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-folder", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_latent_object_weights_cover_exactly_the_cells_under_an_object():
    from playground.txt2img.shapes import Obj, Scene, render

    scenes = [Scene((Obj("star", "red", "small", "top left"),), "black"),
              Scene((Obj("circle", "white", "large", "bottom right"),), "blue")]
    images = T.images_to_tensor(np.stack([np.asarray(render(s)) for s in scenes]))
    weights = T.latent_object_weights(images, 32, 5.0)
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
    latents = T.encode_latents(vae, images)
    tokenizer = M.build_tokenizer(cfg.model)
    captions = [s.caption for s in scenes]

    def first_loss(weights) -> float:
        task = T.unet_task(cfg, vae, tokenizer, latents, captions, seed=0, pixel_weights=weights)
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


def test_shape_swap_changes_one_shape_and_never_makes_a_held_out_pair():
    import random

    from playground.txt2img.shapes import HELD_OUT_PAIRS, shape_swapped

    _, scenes = make_dataset(300, seed=0)
    rng = random.Random(0)
    for scene in scenes:
        swapped = shape_swapped(scene, rng)
        changed = [(a, b) for a, b in zip(scene.objects, swapped.objects, strict=True) if a != b]
        assert len(changed) == 1 and swapped.background == scene.background
        (old, new), = changed
        assert new.shape != old.shape and (new.colour, new.size, new.position) == (
            old.colour, old.size, old.position)
        assert (new.colour, new.shape) not in HELD_OUT_PAIRS


def test_swap_keeps_the_states_up_to_the_shape_word_and_takes_the_rest():
    import random

    from playground.txt2img.shapes import shape_swapped

    cfg = _tiny()
    tokenizer = M.build_tokenizer(cfg.model)
    _, scenes = make_dataset(6, seed=1)
    rng = random.Random(0)
    swapped = [shape_swapped(s, rng) for s in scenes]
    ids = M.caption_ids(tokenizer, [s.caption for s in scenes])
    other = M.caption_ids(tokenizer, [s.caption for s in swapped])
    hidden = torch.zeros(*ids.shape, 3)
    use = torch.tensor([True, True, True, False, False, False])
    out = T.swap_after_shape(hidden, torch.ones_like(hidden), ids, other, use)
    assert out[3:].eq(0).all()  # rows not chosen are untouched
    for row in range(3):
        words = tokenizer.convert_ids_to_tokens(ids[row].tolist())
        first = int(out[row, :, 0].argmax())  # the first swapped state follows the shape word
        pairs = zip(scenes[row].objects, swapped[row].objects, strict=True)
        old = next(o.shape for o, n in pairs if o != n)
        assert words[first - 1].removesuffix("</w>") == old
        assert out[row, :first].eq(0).all() and out[row, first:].eq(1).all()


def test_cli_trains_with_the_shape_swap(tmp_path):
    from playground.train import main

    losses = {}
    for share in ("0", "1"):
        out = tmp_path / f"run{share}"
        main(["txt2img", "--preset", "tiny", "--out", str(out), "--set", "n_images=16",
              "--set", f"shape_swap_p={share}"])
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["config"]["shape_swap_p"] == float(share)
        losses[share] = summary["final_metrics"]["loss"]
    assert losses["1"] != pytest.approx(losses["0"], rel=1e-4)  # the swapped states reach the UNet


@pytest.mark.parametrize("name", sorted(T.PRESETS))
def test_every_preset_passes_the_setting_checks(name):
    # init_from names a run folder that exists only where the chain was trained; the other
    # settings go through the same checks as a --set on the command line
    cfg = T.resolve_config(name, {"init_from": ""})
    assert cfg.unet_decay_steps <= cfg.unet_steps
    assert cfg.init_from == "" and cfg.data_seed >= 0


def test_tail_jitter_keeps_the_objects_and_rescales_the_rest():
    cfg = _tiny()
    images, _ = _data(cfg)
    latents = T.encode_latents(M.build_vae(cfg.model), images)  # (8, C, 8, 8) at 16 px
    assert torch.equal(T.jitter_outside_objects(latents, images, 0.0,
                                                torch.Generator().manual_seed(0)), latents)
    out = T.jitter_outside_objects(latents, images, 1.0, torch.Generator().manual_seed(0))
    again = T.jitter_outside_objects(latents, images, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    factor = images.shape[-1] // latents.shape[-1]
    on_object = F.max_pool2d((T.object_weights(images, 2.0) > 1).float(), factor) > 0
    same = (out == latents).all(dim=1, keepdim=True)  # (8, 1, s, s)
    assert same[on_object].all()  # every latent pixel under an object is kept
    far = ~(F.max_pool2d(on_object.float(), 3, stride=1, padding=1) > 0)
    assert (~same[far]).float().mean() > 0.9  # away from the objects they change
    assert not same.all()


def test_decoder_only_cli_fine_tunes_the_decoder_of_a_pipeline(tmp_path):
    from playground.core.errors import UserInputError
    from playground.train import main

    base = tmp_path / "base"
    main(["txt2img", "--preset", "tiny", "--out", str(base)])
    out = tmp_path / "vae"
    main(["txt2img", "--preset", "tiny", "--out", str(out), "--set", f"init_from={base}",
          "--set", "decoder_only=true", "--set", "decoder_steps=4", "--set",
          "decoder_tail_p=0.5", "--set", "decoder_lr=3e-3"])
    from diffusers import AutoencoderKL

    old, new = AutoencoderKL.from_pretrained(base / "vae"), AutoencoderKL.from_pretrained(out)
    assert new.config.scaling_factor == old.config.scaling_factor != 1.0
    for part in ("encoder", "quant_conv"):  # the latents the UNet learnt stay the same
        a, b = getattr(old, part).state_dict(), getattr(new, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = old.decoder.state_dict(), new.decoder.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 4 and summary["config"]["decoder_tail_p"] == 0.5
    with pytest.raises(UserInputError, match="init_from"):
        T.train_cli("tiny", dataclasses.replace(_loop(1), out_dir=str(tmp_path / "no")), None,
                    {"decoder_only": True, "decoder_steps": 2})
    with pytest.raises(UserInputError, match="decoder_steps"):
        T.resolve_config("tiny", {"decoder_only": True})
