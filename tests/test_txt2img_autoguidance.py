"""Autoguidance on a tiny real pipeline: the formula, the folder, generate() and its record."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from playground.core import registry
from playground.core.errors import UserInputError
from playground.txt2img import inference as inf
from playground.txt2img import model as M
from playground.txt2img.autoguidance import GUIDE_FOLDER, Autoguidance, load_guide
from playground.txt2img.train import PRESETS

TINY = PRESETS["tiny"].model
PROMPT = "a small red star at the top left on a blue background"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny pipeline saved twice: 'tiny-plain' without a guide, 'tiny-guided' with a guide UNet
    (other random weights) in guide_unet/ and a suggested weight of 1.5 up to timestep 700."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("auto")
    plain, guided = root / "plain", root / "guided"
    M.save_pipeline(M.build_untrained_pipeline(TINY), plain)
    shutil.copytree(plain, guided)
    torch.manual_seed(1)
    M.build_unet(TINY, M.latent_size(TINY)).save_pretrained(guided / GUIDE_FOLDER)
    registry.register(registry.ModelEntry("tiny-plain", inf.FAMILY, path=plain))
    registry.register(registry.ModelEntry("tiny-guided", inf.FAMILY, path=guided,
                                          extra={"autoguidance": 1.5,
                                                 "autoguidance_max_t": 700}))
    return plain, guided


def _unets(folders):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folders[1] / "unet").eval()
    return unet, load_guide(folders[1])


@pytest.mark.parametrize("cfg", [True, False])
def test_hook_adds_the_autoguidance_term(folders, cfg):
    """With CFG the pipeline then computes e_u + g(e_c - e_u) + w(e_c - e_b); without CFG the
    prediction is e_c + w(e_c - e_b)."""
    unet, guide = _unets(folders)
    g, w = 4.0, 1.5
    pipe = SimpleNamespace(unet=unet, do_classifier_free_guidance=cfg, guidance_scale=g)
    torch.manual_seed(3)
    x = torch.randn(1, TINY.latent_channels, 8, 8)
    hidden = torch.randn(2, 8, TINY.text_width)  # [empty prompt; prompt]
    t = torch.tensor(500)
    with torch.no_grad():
        e_u, e_c = unet(x.repeat(2, 1, 1, 1), t, encoder_hidden_states=hidden).sample.chunk(2)
        e_b = guide(x, t, encoder_hidden_states=hidden[1:]).sample
        handle = Autoguidance(pipe, guide, w).attach()
        try:
            if cfg:
                out_u, out_c = unet(x.repeat(2, 1, 1, 1), t, encoder_hidden_states=hidden,
                                    return_dict=False)[0].chunk(2)
            else:
                out_c = unet(x, t, encoder_hidden_states=hidden[1:]).sample
        finally:
            handle.remove()
    assert (e_c - e_b).abs().mean() > 1e-3  # the two UNets differ, so the term is not zero
    if cfg:
        assert torch.equal(out_u, e_u)
        want = e_u + g * (e_c - e_u) + w * (e_c - e_b)
        assert torch.allclose(out_u + g * (out_c - out_u), want, atol=1e-5)
    else:
        assert torch.allclose(out_c, e_c + w * (e_c - e_b), atol=1e-6)


def test_folder_loads_as_a_pipeline_and_guide_loads_beside_it(folders):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline

    plain, guided = folders
    pipe = DiffusionPipeline.from_pretrained(guided)  # guide_unet/ is not a pipeline component
    assert isinstance(pipe, StableDiffusionPipeline) and not hasattr(pipe, GUIDE_FOLDER)
    assert load_guide(plain) is None and load_guide(guided) is not None
    loaded = inf.load_pipeline("tiny-guided")
    assert isinstance(loaded, inf.LoadedPipeline) and loaded.guide is not None
    assert inf.load_pipeline(registry.resolve(inf.FAMILY, "tiny-guided")) is loaded  # cached
    assert inf.load_pipeline("tiny-plain").guide is None


def test_hook_leaves_steps_above_the_interval_alone(folders):
    unet, guide = _unets(folders)
    pipe = SimpleNamespace(unet=unet, do_classifier_free_guidance=False, guidance_scale=1.0)
    x, hidden = torch.randn(1, TINY.latent_channels, 8, 8), torch.randn(1, 8, TINY.text_width)
    handle = Autoguidance(pipe, guide, 2.0, max_timestep=600).attach()
    try:
        with torch.no_grad():
            outs = {t: unet(x, torch.tensor(t), encoder_hidden_states=hidden).sample
                    for t in (601, 600)}
    finally:
        handle.remove()
    with torch.no_grad():
        plain = {t: unet(x, torch.tensor(t), encoder_hidden_states=hidden).sample
                 for t in (601, 600)}
    assert torch.equal(outs[601], plain[601]) and not torch.allclose(outs[600], plain[600])


def test_generate_uses_the_suggested_weight_and_records_it(folders, tmp_path):
    base = {"prompt": PROMPT, "steps": 3, "guidance": 4.0, "seed": 5}
    default = inf.generate("tiny-guided", **base, out_dir=tmp_path / "a")
    explicit = inf.generate("tiny-guided", **base, autoguidance=1.5, autoguidance_max_t=700,
                            out_dir=tmp_path / "b")
    off = inf.generate("tiny-guided", **base, autoguidance=0.0, out_dir=tmp_path / "c")
    plain = inf.generate("tiny-plain", **base, autoguidance=0.0, out_dir=tmp_path / "d")
    assert default.record["params"]["autoguidance"] == 1.5
    assert default.record["params"]["autoguidance_max_t"] == 700
    assert default.paths[0].read_bytes() == explicit.paths[0].read_bytes()
    params = inf.read_parameters(default.paths[0])
    assert params.autoguidance == 1.5 and params.autoguidance_max_t == 700
    assert len(default.trajectory) == 3
    # off = the plain pipeline (same weights but the guide), and the guide changes the image
    assert off.images[0].tobytes() == plain.images[0].tobytes()
    assert default.images[0].tobytes() != off.images[0].tobytes()
    assert default.trajectory[-1].tobytes() != off.trajectory[-1].tobytes()


def test_interval_selects_the_steps(folders, tmp_path):
    """DDIM 'trailing' with 3 steps visits t = 999, 666, 333: max_t 0 is no step (= off), 500
    only the last, 1000 all three; each changes the image differently."""
    def image(max_t, weight=2.0):
        return inf.generate("tiny-guided", PROMPT, steps=3, guidance=4.0, seed=1,
                            autoguidance=weight, autoguidance_max_t=max_t,
                            out_dir=tmp_path / f"{max_t}-{weight}").images[0].tobytes()
    off, none, last, every = image(1000, 0.0), image(0), image(500), image(1000)
    assert none == off and len({off, last, every}) == 3


def test_a_guide_identical_to_the_model_changes_nothing(folders, tmp_path):
    """e_c - e_b = 0 when the guide is the model itself: any weight gives the same image."""
    _, guided = folders
    same = tmp_path / "same"
    shutil.copytree(guided, same)
    shutil.rmtree(same / GUIDE_FOLDER)
    shutil.copytree(same / "unet", same / GUIDE_FOLDER)
    registry.register(registry.ModelEntry("tiny-same", inf.FAMILY, path=same))
    images = [inf.generate("tiny-same", PROMPT, steps=3, guidance=4.0, seed=2, autoguidance=w,
                           out_dir=tmp_path / str(w)).images[0] for w in (0.0, 3.0)]
    assert images[0].tobytes() == images[1].tobytes()


def test_model_without_guide_turns_it_off_with_a_note(folders, tmp_path):
    result = inf.generate("tiny-plain", PROMPT, steps=2, seed=0, autoguidance=2.0,
                          out_dir=tmp_path)
    assert result.record["params"]["autoguidance"] == 0.0
    assert any("no guide UNet" in n for n in result.notes)


@pytest.mark.parametrize("kwargs,message", [
    ({"autoguidance": -0.5}, "Autoguidance must be between 0"),
    ({"autoguidance": 6}, "Autoguidance must be between 0"),
    ({"autoguidance": 1e9}, "Autoguidance must be between 0"),
    ({"autoguidance_max_t": -1}, "Autoguidance up to timestep must be between 0 and 1000"),
    ({"autoguidance_max_t": 10**6}, "Autoguidance up to timestep must be between 0 and 1000"),
])
def test_out_of_range_settings_are_refused(folders, kwargs, message):
    with pytest.raises(UserInputError, match=message):
        inf.generate("tiny-guided", PROMPT, steps=2, **kwargs)


def test_tab_restores_the_weight_from_a_png(folders):
    from playground.txt2img import tab

    gallery, *_ = tab.run_generate("tiny-guided", PROMPT, "", 2, 3.0, "DDIM", 1, 16, 16, 1,
                                   False, False, 0.75, 420)
    restored = tab.restore_from_png(gallery[0])
    assert restored[0] == "tiny-guided" and restored[-2:] == (0.75, 420)
    assert [u["value"] for u in tab.on_model_change("tiny-guided")[-2:]] == [1.5, 700]
    assert [u["value"] for u in tab.on_model_change("stabilityai/sd-turbo")[-2:]] == [0.0, 1000]


def test_generate_takes_the_models_own_steps_and_guidance(folders, tmp_path):
    """None = the registry's suggestion, as the tab's sliders open; hub ids get SD's."""
    from playground.txt2img import suggested_settings

    registry.register(registry.ModelEntry("tiny-suggested", inf.FAMILY, path=folders[1],
                                          extra={"steps": 2, "guidance": 3.0,
                                                 "autoguidance": 0.5}))
    own = inf.generate("tiny-suggested", PROMPT, seed=1, out_dir=tmp_path / "own")
    explicit = inf.generate("tiny-suggested", PROMPT, steps=2, guidance=3.0, seed=1,
                            autoguidance=0.5, autoguidance_max_t=1000, out_dir=tmp_path / "x")
    params = own.record["params"]
    assert (params["steps"], params["guidance"], params["autoguidance"]) == (2, 3.0, 0.5)
    assert len(own.trajectory) == 2
    assert own.paths[0].read_bytes() == explicit.paths[0].read_bytes()
    assert tuple(suggested_settings("someone/sd-model")) == (512, 25, 7.5, 0.0, 1000)
