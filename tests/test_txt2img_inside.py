"""Inside the text-to-image model (issue 24), on a tiny random pipeline: the streamed live
preview and its Stop, seed variation, and the tab's streaming handler (the attention maps and
the X/Y grid: test_txt2img_inside_views.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.core.errors import UserInputError
from playground.txt2img import inference as inf
from playground.txt2img import preview
from playground.txt2img.variation import check_variation, variation_noise
from tests.conftest import register_tiny_txt2img

NAME = "tiny-inside"
PROMPT = "a small red circle at the top left on a blue background"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return register_tiny_txt2img(tmp_path_factory, NAME)


@pytest.fixture
def slow_unet(tiny):
    """Every UNet call of the tiny model takes 40 ms more and is logged with its end time."""
    calls: list[float] = []

    def hook(module, args, output):
        time.sleep(0.04)
        calls.append(time.monotonic())
    handles = [inf.load_pipeline(tiny, copy=k).pipe.unet.register_forward_hook(hook)
               for k in range(inf.COPIES)]
    yield calls
    for handle in handles:
        handle.remove()


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)


# ---- live preview ----------------------------------------------------------------------------

def test_stream_frames_are_readable_and_the_last_is_the_final_images(tiny, tmp_path):
    frames = list(preview.generate_stream(tiny, PROMPT, steps=4, seed=3, n_images=2,
                                          show_steps=False, out_dir=tmp_path))
    *steps, last = frames
    assert last.result is not None and all(f.result is None for f in steps)
    assert steps and [f.step for f in steps] == sorted({f.step for f in steps})
    assert all(1 <= f.step <= 4 and f.total == 4 for f in steps)
    # two 16 px images, each enlarged 16x to 256 px, side by side
    assert last.image.size == (2 * 256 + preview.GAP, 256)
    assert all(f.image.size == last.image.size for f in steps)
    # the last frame is the final images: those of the PNGs the run wrote
    from PIL import Image

    saved = [Image.open(p) for p in last.result.paths]
    assert (pixels(last.image) == pixels(preview.compose(saved))).all()
    plain = inf.generate(tiny, PROMPT, steps=4, seed=3, n_images=2, show_steps=False,
                         out_dir=tmp_path)
    assert [pixels(a).tolist() for a in plain.images] == [pixels(b).tolist() for b in saved]


def test_a_preview_frame_is_the_decoded_x0_of_its_step(tiny, tmp_path, slow_unet):
    """Known answer: the first tile of the frame of step k, shrunk back, is the step strip's
    frame k (the first image's x0 estimate decoded inside the sampler)."""
    frames = list(preview.generate_stream(tiny, PROMPT, steps=5, guidance=4.0, seed=1,
                                          n_images=2, show_steps=True, budget=1.0,
                                          out_dir=tmp_path))
    trajectory = frames[-1].result.trajectory
    assert len(trajectory) == 5 and len(frames) >= 2
    for frame in frames[:-1]:
        tile = pixels(frame.image)[:256:16, :256:16]  # the first image, 16x nearest -> 16 px
        assert np.abs(tile - pixels(trajectory[frame.step - 1])).max() <= 2, frame.step


def test_stop_ends_the_stream_within_one_step_and_returns_the_prediction(tiny, tmp_path,
                                                                          slow_unet):
    asked = []
    stream = preview.generate_stream(tiny, PROMPT, steps=40, guidance=4.0, seed=2,
                                     n_images=2, stop=lambda: bool(asked), budget=1.0,
                                     out_dir=tmp_path)
    for frame in stream:
        if frame.result is None and frame.step >= 3 and not asked:
            asked.append(time.monotonic())
        last = frame
    after = sum(t > asked[0] for t in slow_unet)
    assert after <= 1  # the UNet call in flight when Stop came, no more
    result = last.result
    assert 3 <= result.stopped_at < 40 and len(slow_unet) == result.stopped_at
    assert result.record["params"]["stopped_at_step"] == result.stopped_at
    assert (pixels(last.image) == pixels(preview.compose(result.images))).all()


def test_closing_the_stream_stops_the_run(tiny, slow_unet):
    stream = preview.generate_stream(tiny, PROMPT, steps=40, seed=0)
    first = next(stream)
    assert first.result is None
    stream.close()  # the user left: the sampler ends after the step in flight
    done = len(slow_unet)
    time.sleep(0.2)
    assert len(slow_unet) == done < 40


def test_the_time_budget_skips_frames_but_never_the_first_or_the_last(tiny, tmp_path,
                                                                     slow_unet):
    def shown(budget):
        frames = list(preview.generate_stream(tiny, PROMPT, steps=8, seed=0, budget=budget,
                                              show_steps=False, out_dir=tmp_path))
        assert frames[-1].result is not None
        return [f.step for f in frames[:-1]]
    assert shown(0.0) == [1]  # the first frame is free; after it, any decode is over budget
    every = shown(1.0)  # 40 ms steps, ~1 ms frames: the preview keeps up with every step
    assert len(every) >= 4 and every[0] == 1


def test_preview_off_yields_only_the_final_images(tiny, tmp_path):
    frames = list(preview.generate_stream(tiny, PROMPT, steps=3, seed=0, preview=False,
                                          out_dir=tmp_path))
    assert len(frames) == 1 and frames[0].result is not None and frames[0].step == 3


def test_stream_errors_reach_the_caller(tiny):
    with pytest.raises(UserInputError, match="Prompt is empty"):
        list(preview.generate_stream(tiny, "", steps=2))


# ---- seed variation --------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["DDIM", "Euler ancestral"])
def test_variation_strength_0_is_the_seed_and_1_the_variation_seed(tiny, tmp_path, scheduler):
    def run(seed, strength=None):
        extras = None if strength is None else inf.Extras(noise=variation_noise(9, strength))
        result = inf.generate(tiny, PROMPT, steps=3, seed=seed, n_images=2, scheduler=scheduler,
                              show_steps=False, out_dir=tmp_path, extras=extras)
        return [pixels(im).tolist() for im in result.images]
    base, other = run(2), run(9)
    assert base != other
    assert run(2, 0.0) == base
    assert run(2, 1.0) == other
    middle = run(2, 0.4)
    assert middle not in (base, other) and run(2, 0.4) == middle


def test_variation_noise_is_a_slerp_of_the_two_seeds(tiny):
    from playground.txt2img.variation import blend, initial_noise

    pipe = inf.load_pipeline(tiny).pipe
    a, _ = initial_noise(pipe, 0, 2, 16, 16)
    b, _ = initial_noise(pipe, 7, 2, 16, 16)
    assert torch.equal(a[1], initial_noise(pipe, 1, 1, 16, 16)[0][0])  # image i: seed + i
    half = blend(a, b, 0.5)
    for i in range(2):  # halfway along the great circle: equal angles to both ends
        cos_a = F.cosine_similarity(half[i].flatten(), a[i].flatten(), dim=0)
        cos_b = F.cosine_similarity(half[i].flatten(), b[i].flatten(), dim=0)
        assert float(cos_a) == pytest.approx(float(cos_b), abs=1e-5)


def test_bad_variation_settings_are_refused():
    assert check_variation(None, 0) == (None, 0.0)
    assert check_variation(5, 0.25) == (5, 0.25)
    with pytest.raises(UserInputError, match="Variation strength must be between"):
        check_variation(5, 1.5)
    with pytest.raises(UserInputError, match="Variation seed must be between"):
        check_variation(-1, 0.5)
    with pytest.raises(UserInputError, match="Variation seed is required"):
        check_variation(None, 0.5)


# ---- the tab's handlers ------------------------------------------------------------------------

def test_live_handler_streams_then_gives_what_run_generate_gives(tiny):
    from playground.txt2img import tab

    args = (tiny, PROMPT, "", 4, 4.0, "DDIM", 2, 16, 16, 3, False, True)
    updates = list(tab.run_generate_live(*args))
    *live, final = updates
    assert live and all("step" in u[2] and u[6].endswith(".png") for u in live)
    plain = tab.run_generate(*args)
    assert final[1:3] == plain[1:3] and len(final[0]) == len(plain[0]) == 2
    from PIL import Image

    assert [pixels(Image.open(p)).tolist() for p in final[0]] == [
        pixels(Image.open(p)).tolist() for p in plain[0]]
    assert Image.open(final[6]).size == (2 * 256 + preview.GAP, 256)  # the batch, enlarged
    assert len(final[4]) == 4 and Image.open(final[4][0]).size == (256, 256)  # the strip too


def test_tab_stop_ends_the_live_run_within_one_step(tiny, slow_unet):
    import gradio as gr

    from playground.txt2img import tab

    out = []

    def run():
        out.extend(tab.run_generate_live(gr.Request(session_hash="erin"), tiny, PROMPT, "", 40,
                                         4.0, "DDIM", 1, 16, 16, 0, False, False, 0.0, 1000))
    worker = threading.Thread(target=run)
    worker.start()
    end = time.monotonic() + 30
    while len(slow_unet) < 4:
        assert time.monotonic() < end
        time.sleep(0.01)
    clicked = time.monotonic()
    assert tab.stop_generation(gr.Request(session_hash="erin")).startswith("Stopping")
    worker.join(10)
    assert not worker.is_alive() and sum(t > clicked for t in slow_unet) <= 1
    record = out[-1][3]
    assert 4 <= record["params"]["stopped_at_step"] < 40 and "Stopped at step" in out[-1][2]


def test_png_info_restores_the_variation(tiny):
    from playground.txt2img import tab

    final = list(tab.run_generate_live(tiny, PROMPT, "", 2, 4.0, "DDIM", 1, 16, 16, 3, False,
                                       False, 0.0, 1000, 11, 0.3))[-1]
    assert final[3]["params"]["variation_seed"] == 11
    restored = tab.restore_from_png(final[0][0])
    assert restored[12:14] == (11, 0.3) and restored[-2:] == (0.0, 1000)
    again = list(tab.run_generate_live(tiny, PROMPT, "", 2, 4.0, "DDIM", 1, 16, 16, 3, False,
                                       False, 0.0, 1000, *restored[12:14]))[-1]
    from PIL import Image

    assert (pixels(Image.open(again[0][0])) == pixels(Image.open(final[0][0]))).all()


def test_new_handlers_ask_zerogpu_for_a_slot(tiny):
    from playground.core import zerogpu

    handlers = zerogpu.HANDLERS
    live = handlers["playground.txt2img.tab.generate_live_on_device"].duration
    attend = handlers["playground.txt2img.tab_inside.attention_on_device"].duration
    grid_ = handlers["playground.txt2img.tab_inside.grid_on_device"].duration
    assert 5 <= live("m", "p", "", 20, 4.0, "DDIM", 1, 64, 64, 0) <= 15
    assert live("m", "p", "", 25, 7.5, "DDIM", 4, 512, 512, 0) > live(
        "m", "p", "", 25, 7.5, "DDIM", 1, 512, 512, 0)
    assert attend("m", "p", "", 25, 7.5, "DDIM", 512, 512, 0) > attend(
        "m", "p", "", 5, 7.5, "DDIM", 512, 512, 0)
    small = grid_(tiny, PROMPT, "", 2, 4.0, "DDIM", 512, 512, 0, 0.0, 1000, None, 0.0,
                  "Seed", "0-1", "none", "")
    big = grid_(tiny, PROMPT, "", 25, 4.0, "DDIM", 512, 512, 0, 0.0, 1000, None, 0.0,
                "Seed", "0-3", "Guidance", "1, 2, 3, 4")
    assert 5 <= small < big <= zerogpu.MAX_DURATION_S
