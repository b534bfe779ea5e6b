"""The corner-emphasis distillation of the text encoder, on a tiny pipeline."""

from __future__ import annotations

import pytest
import torch

from playground.txt2img import emphasis as E
from playground.txt2img import model as M
from playground.txt2img import train as T
from playground.txt2img.shapes import Obj, Scene


def _pipe():
    torch.manual_seed(5)
    return M.build_untrained_pipeline(T.PRESETS["tiny"].model)


def test_corner_mean_averages_the_four_corners_and_leaves_the_center_alone():
    pipe = _pipe()
    corner = Scene((Obj("star", "red", "small", "top right"),), "blue")
    centre = Scene((Obj("star", "red", "small", "center"),), "blue")
    h, m = E.corner_mean(pipe.text_encoder, pipe.tokenizer, [corner, centre])
    captions = [f"a small red star at the {c} on a blue background"
                for c in ("top left", "top right", "bottom left", "bottom right")]
    expected = M.encode_ids(pipe.text_encoder, M.caption_ids(pipe.tokenizer, captions)).mean(0)
    torch.testing.assert_close(m[0], expected)
    assert not torch.allclose(h[0], m[0])  # the corner words change the output
    torch.testing.assert_close(m[1], h[1])  # an object at the center keeps its output
    two = Scene((Obj("star", "red", "small", "top left"),
                 Obj("circle", "white", "large", "bottom right")), "blue")
    assert E.moved(two, "top right") == ("a small red star at the top right and a large white "
                                         "circle at the top right on a blue background")


def test_distillation_makes_the_corner_louder_and_keeps_the_rest():
    pipe = _pipe()
    scenes = E.training_scenes(400, seed=3)
    h0, m0 = E.corner_mean(pipe.text_encoder, pipe.tokenizer, scenes)
    before = E.corner_part(pipe.text_encoder, pipe.tokenizer, scenes)
    encoder, history = E.distil_encoder(pipe, 4.0, 120, n_captions=3000, batch=64, every=60)
    assert [row[0] for row in history] == [60, 120]
    assert history[-1][1] < history[0][1] or history[-1][1] < 0.05
    after = E.corner_part(encoder, pipe.tokenizer, scenes)
    assert after > 2.0 * before, (before, after)  # the target is 4x; an untouched copy gives 1x
    _, m1 = E.corner_mean(encoder, pipe.tokenizer, scenes)
    rest_change = float((m1 - m0).norm(dim=-1).mean() / m0.norm(dim=-1).mean())
    assert rest_change < 0.2  # what the corner words do not change stays close
    assert all(not p.requires_grad for p in encoder.parameters())
    original = pipe.text_encoder.state_dict()
    assert any(not torch.equal(v, original[k]) for k, v in encoder.state_dict().items())


def test_cli_writes_a_pipeline_with_only_the_encoder_changed(tmp_path):
    from diffusers import DiffusionPipeline

    pipe = _pipe()
    M.save_pipeline(pipe, tmp_path / "src")
    result = E.main([str(tmp_path / "src"), str(tmp_path / "out"), "--alpha", "3",
                     "--steps", "2", "--captions", "50"])
    assert [row[0] for row in result["history"]] == [2]
    out = DiffusionPipeline.from_pretrained(tmp_path / "out", torch_dtype=torch.float32)
    for name, value in pipe.unet.state_dict().items():
        assert torch.equal(value, out.unet.state_dict()[name])
    changed = [n for n, v in pipe.text_encoder.state_dict().items()
               if not torch.equal(v, out.text_encoder.state_dict()[n])]
    assert changed
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--alpha", "0.5"], "--alpha must be in [1, 100]"),
    (["--alpha", "1000"], "--alpha must be in [1, 100]"),
    (["--steps", "0"], "--steps must be 1 or more"),
    (["--captions", "5"], "--captions 10 or more"),
    ([], "is not a pipeline folder"),
])
def test_cli_refuses_bad_values(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        E.main([str(tmp_path / "missing"), str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
