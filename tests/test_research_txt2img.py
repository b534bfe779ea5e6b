"""The txt2img research code (research/txt2img/): probes, unshipped presets and their switches.

Research imports the product; these tests keep it working as the product changes.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from playground.core.training import LoopConfig
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img import vae_stage as V
from playground.txt2img.shapes import images_to_tensor, make_dataset, object_weights, resize_images
from research.txt2img import train as R


def _tiny(**changes) -> R.ResearchConfig:
    return dataclasses.replace(R.PRESETS["tiny"], **changes)


def _data(cfg):
    raw, scenes = make_dataset(8, seed=0)
    return resize_images(images_to_tensor(raw), cfg.model.image_size), scenes


def _loop(steps: int) -> LoopConfig:
    return LoopConfig(max_steps=steps, device="cpu", progress=False, log_every=steps)


def _saved_tiny_pipeline(folder):
    torch.manual_seed(3)
    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    M.save_pipeline(pipe, folder)
    return pipe


def _unet_task(cfg, vae, seed: int = 0):
    images, scenes = _data(cfg)
    latents = V.encode_latents(vae, images)
    return R.build_task(cfg, vae, M.build_tokenizer(cfg.model), latents,
                        [s.caption for s in scenes], seed=seed)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"reinit_scale": 0}, "reinit_scale"),
    ({"reinit_words": "top"}, "reinit_words must be a list"),
    ({"shape_swap_p": 1.5}, "shape_swap_p"),
    ({"decoder_tail_p": -0.1}, "decoder_tail_p"),
    ({"decoder_tail_p": 0.5}, "decoder_tail_p applies to a decoder_only run"),
    ({"decoder_only": "yes"}, "decoder_only must be true or false"),
    ({"decoder_noise": -1, "decoder_only": True}, "decoder_noise"),
    ({"decoder_only": True, "decoder_tail_p": 0.5, "decoder_noise": 0.2},
     "decoder_tail_p and decoder_noise are separate"),
    ({"decoder_steps": -1}, "decoder_steps"),  # the product's checks run too
])
def test_bad_research_settings_get_clear_messages(overrides, message):
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        R.resolve_config("shapes", overrides)


@pytest.mark.parametrize("name", sorted(R.PRESETS))
def test_every_research_preset_passes_the_setting_checks(name):
    cfg = R.resolve_config(name, {"init_from": ""})
    assert cfg.unet_decay_steps <= cfg.unet_steps


def test_research_presets_are_the_product_chain_plus_the_unshipped_ones():
    assert set(T.PRESETS) < set(R.PRESETS)
    assert set(R.PRESETS) - set(T.PRESETS) == {"shapes-position", "shapes-detail2", "shapes-swap",
                                               "shapes-decoder-tail", "shapes-cuda"}
    for name, cfg in T.PRESETS.items():  # the same settings, no switch on
        research = dataclasses.asdict(R.PRESETS[name])
        assert {k: research[k] for k in dataclasses.asdict(cfg)} == dataclasses.asdict(cfg)
        assert not (research["reinit_words"] or research["shape_swap_p"]
                    or research["decoder_only"] or research["decoder_tail_p"])


def test_reinit_word_that_is_not_one_token_is_refused(tmp_path):
    from playground.core.errors import UserInputError

    base = _saved_tiny_pipeline(tmp_path / "base")
    cfg = R.resolve_config("tiny", {"init_from": str(tmp_path / "base"),
                                    "reinit_words": ("zebra",)})
    with pytest.raises(UserInputError, match="'zebra' is not one token"):
        _unet_task(cfg, base.vae)


def test_fine_tune_starts_from_a_pipeline_and_redraws_only_the_named_words(tmp_path):
    from playground.txt2img.shapes import caption_words

    base = _saved_tiny_pipeline(tmp_path / "base")
    cfg = R.resolve_config("tiny", {"init_from": str(tmp_path / "base"),
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



def test_position_probe_scores_a_named_corner_and_chance():
    from research.txt2img.position_probe import corner_probe, quadrant_hits

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
    from research.txt2img.position_probe import focused_fit

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
    from research.txt2img.position_probe import encoder_probe

    pipe = M.build_untrained_pipeline(T.PRESETS["tiny"].model)
    table = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for word in ("top", "bottom", "left", "right"):  # equal embeddings: no corner signal
            table[R.word_token(pipe.tokenizer, word)] = table[R.word_token(pipe.tokenizer, "a")]
    blind = encoder_probe(pipe, n=600)
    assert max(blind.values()) < 0.45  # chance is 0.25
    with torch.no_grad():
        for i, word in enumerate(("top", "bottom", "left", "right")):
            table[R.word_token(pipe.tokenizer, word)] = 3.0 * torch.eye(table.shape[1])[i]
    seeing = encoder_probe(pipe, n=600)
    assert seeing.keys() == blind.keys() and max(seeing.values()) > 0.9
    assert encoder_probe(pipe, n=600) == seeing  # deterministic


@pytest.mark.parametrize(("args", "message"), [
    (["--fit-steps", "-1"], "--fit-steps must be 0"),
    (["--diverse-share", "1.0"], "--diverse-share must be in"),
    (["--diverse-share", "-0.1"], "--diverse-share must be in"),
])
def test_position_probe_cli_refuses_bad_values(args, message, capsys):
    from research.txt2img.position_probe import main

    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-folder", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err



def test_shape_swap_changes_one_shape_and_never_makes_a_held_out_pair():
    import random

    from playground.txt2img.shapes import HELD_OUT_PAIRS

    _, scenes = make_dataset(300, seed=0)
    rng = random.Random(0)
    for scene in scenes:
        swapped = R.shape_swapped(scene, rng)
        changed = [(a, b) for a, b in zip(scene.objects, swapped.objects, strict=True) if a != b]
        assert len(changed) == 1 and swapped.background == scene.background
        (old, new), = changed
        assert new.shape != old.shape and (new.colour, new.size, new.position) == (
            old.colour, old.size, old.position)
        assert (new.colour, new.shape) not in HELD_OUT_PAIRS


def test_swap_keeps_the_states_up_to_the_shape_word_and_takes_the_rest():
    import random


    cfg = _tiny()
    tokenizer = M.build_tokenizer(cfg.model)
    _, scenes = make_dataset(6, seed=1)
    rng = random.Random(0)
    swapped = [R.shape_swapped(s, rng) for s in scenes]
    ids = M.caption_ids(tokenizer, [s.caption for s in scenes])
    other = M.caption_ids(tokenizer, [s.caption for s in swapped])
    hidden = torch.zeros(*ids.shape, 3)
    use = torch.tensor([True, True, True, False, False, False])
    out = R.swap_after_shape(hidden, torch.ones_like(hidden), ids, other, use)
    assert out[3:].eq(0).all()  # rows not chosen are untouched
    for row in range(3):
        words = tokenizer.convert_ids_to_tokens(ids[row].tolist())
        first = int(out[row, :, 0].argmax())  # the first swapped state follows the shape word
        pairs = zip(scenes[row].objects, swapped[row].objects, strict=True)
        old = next(o.shape for o, n in pairs if o != n)
        assert words[first - 1].removesuffix("</w>") == old
        assert out[row, :first].eq(0).all() and out[row, first:].eq(1).all()


def test_cli_trains_with_the_shape_swap(tmp_path):
    losses = {}
    for share in ("0", "1"):
        out = tmp_path / f"run{share}"
        R.main(["--preset", "tiny", "--out", str(out), "--set", "n_images=16",
              "--set", f"shape_swap_p={share}"])
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["config"]["shape_swap_p"] == float(share)
        losses[share] = summary["final_metrics"]["loss"]
    assert losses["1"] != pytest.approx(losses["0"], rel=1e-4)  # the swapped states reach the UNet


def test_research_cli_passes_the_scenes_object_counts_to_balanced_batches(tmp_path):
    out = tmp_path / "balanced"
    R.main(["--preset", "tiny", "--out", str(out), "--set", "two_object_share=0.5"])
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["config"]["two_object_share"] == 0.5


def test_tail_jitter_keeps_the_objects_and_rescales_the_rest():
    cfg = _tiny()
    images, _ = _data(cfg)
    latents = V.encode_latents(M.build_vae(cfg.model), images)  # (8, C, 8, 8) at 16 px
    assert torch.equal(R.jitter_outside_objects(latents, images, 0.0,
                                                torch.Generator().manual_seed(0)), latents)
    out = R.jitter_outside_objects(latents, images, 1.0, torch.Generator().manual_seed(0))
    again = R.jitter_outside_objects(latents, images, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    factor = images.shape[-1] // latents.shape[-1]
    on_object = F.max_pool2d((object_weights(images, 2.0) > 1).float(), factor) > 0
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
    R.main(["--preset", "tiny", "--out", str(out), "--set", f"init_from={base}",
          "--set", "decoder_only=true", "--set", "decoder_steps=4", "--set",
          "decoder_tail_p=0.5", "--set", "decoder_lr=3e-3"])
    noisy = tmp_path / "vae-noise"
    R.main(["--preset", "tiny", "--out", str(noisy), "--set", f"init_from={base}",
            "--set", "decoder_only=true", "--set", "decoder_steps=2", "--set",
            "decoder_noise=0.2"])
    assert json.loads((noisy / "training_summary.json").read_text())["config"][
        "decoder_noise"] == 0.2
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
        R.train_cli("tiny", dataclasses.replace(_loop(1), out_dir=str(tmp_path / "no")), None,
                    {"decoder_only": True, "decoder_steps": 2})
    with pytest.raises(UserInputError, match="decoder_steps"):
        R.resolve_config("tiny", {"decoder_only": True})
