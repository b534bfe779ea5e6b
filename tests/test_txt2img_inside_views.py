"""Inside the text-to-image model (issue 24), on a tiny random pipeline: per-word cross-attention
maps (DAAM) against a plain hook's probabilities, and the X/Y grid (cells, labels, caps, record);
their tab handlers, and a model trained in the app."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.core import registry
from playground.core.errors import UserInputError
from playground.txt2img import attention, grid, preview
from playground.txt2img import inference as inf
from tests.conftest import register_tiny_txt2img

NAME = "tiny-inside-views"
PROMPT = "a small red circle at the top left on a blue background"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return register_tiny_txt2img(tmp_path_factory, NAME)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)


# ---- attention -------------------------------------------------------------------------------

def _tokenizer(tiny):
    return inf.load_pipeline(tiny).pipe.tokenizer


def _positions(tokenizer, prompt, word):
    """Where ``word``'s tokens sit in the tokenized prompt, found by matching ids."""
    ids = tokenizer(prompt).input_ids
    target = tokenizer(word, add_special_tokens=False).input_ids
    for i in range(len(ids)):
        if ids[i:i + len(target)] == target:
            return list(range(i, i + len(target)))
    raise AssertionError(word)


def test_words_map_to_their_tokens_and_a_long_word_to_several(tiny):
    tok = _tokenizer(tiny)
    prompt = "a zebrafish, at the top left"
    words = dict(attention.token_positions(tok, prompt))
    assert list(words) == ["a", "zebrafish", "at", "the", "top", "left"]
    assert words["a"] == [1] and len(words["zebrafish"]) >= 2  # not in the vocabulary: pieces
    assert words["zebrafish"] == _positions(tok, prompt, "zebrafish")
    assert words["left"] == _positions(tok, prompt, "left")
    # the comma is not part of any word
    assert words["at"][0] == words["zebrafish"][-1] + 2
    # a word past the model's 32 tokens is cut off, so it has no map
    long = " ".join(["red"] * 40) + " circle"
    assert "circle" not in dict(attention.token_positions(tok, long))


def test_word_not_in_the_prompt_is_a_clear_error(tiny):
    with pytest.raises(UserInputError, match="'star' is not a word of the prompt. Its words: "
                                             "a, small, red, circle"):
        attention.explain(tiny, PROMPT, "star", steps=2)
    with pytest.raises(UserInputError, match="Type a word"):
        attention.explain(tiny, PROMPT, "  ", steps=2)
    with pytest.raises(UserInputError, match="past the 32 tokens"):
        attention.explain(tiny, " ".join(["red"] * 40) + " circle", "circle", steps=1)


def _plain_hook_maps(tiny, prompt, seed, steps):
    """The reference: diffusers' own AttnProcessor on every attn2, its ``get_attention_scores``
    wrapped to keep the probabilities; the prompt half, mean over heads, each map upsampled
    bilinearly to 8x8 and the mean over calls (layers x steps)."""
    from diffusers.models.attention_processor import AttnProcessor

    pipe = inf.load_pipeline(tiny).pipe
    kept: list[torch.Tensor] = []
    layers = [m for n, m in pipe.unet.named_modules() if n.endswith("attn2")]
    saved = [m.processor for m in layers]
    for module in layers:
        module.set_processor(AttnProcessor())
        scores = module.get_attention_scores

        def wrapped(q, k, mask=None, _scores=scores, _heads=module.heads):
            probs = _scores(q, k, mask)
            kept.append(probs.detach().view(-1, _heads, *probs.shape[1:])[1].mean(0))
            return probs
        module.get_attention_scores = wrapped
    try:
        inf.generate(tiny, prompt, steps=steps, guidance=4.0, seed=seed, show_steps=False)
    finally:
        for module, processor in zip(layers, saved, strict=True):
            module.set_processor(processor)
            del module.get_attention_scores
    maps = []
    for probs in kept:  # (hw, T)
        side = int(probs.shape[0] ** 0.5)
        grid_ = probs.T.reshape(1, -1, side, side)
        maps.append(F.interpolate(grid_, size=(8, 8), mode="bilinear", align_corners=False)[0])
    return torch.stack(maps).mean(0), len(kept)  # (T, 8, 8)


def test_attention_maps_equal_the_mean_of_probabilities_from_a_plain_hook(tiny, tmp_path):
    view = attention.explain(tiny, "a zebrafish at the top left", "zebrafish", steps=3,
                             guidance=4.0, seed=5, out_dir=tmp_path)
    reference, calls = _plain_hook_maps(tiny, "a zebrafish at the top left", 5, 3)
    layers = attention.cross_attention_layers(inf.load_pipeline(tiny).pipe)
    assert len(layers) == 4 and calls == 4 * 3  # attn2 in down, mid, 2x up; at each step
    positions = _positions(_tokenizer(tiny), "a zebrafish at the top left", "zebrafish")
    assert view.chosen.tokens == positions and len(positions) >= 2
    expected = reference[positions].sum(0)
    assert torch.allclose(view.chosen.latent, expected, atol=1e-5)
    left = next(w for w in view.words if w.word == "left")
    assert torch.allclose(left.latent, reference[_positions(_tokenizer(tiny), "a zebrafish at "
                                                            "the top left", "left")].sum(0),
                          atol=1e-5)


def test_attention_sums_to_one_over_tokens_and_word_maps_are_normalised(tiny, tmp_path):
    recorder = attention.AttentionRecorder()
    result = inf.generate(tiny, PROMPT, steps=2, guidance=4.0, seed=0, show_steps=False,
                          out_dir=tmp_path, extras=inf.Extras(
                              attach=lambda pipe, w, h: recorder.attached(pipe, PROMPT, w, h)))
    maps = recorder.mean_maps()
    assert maps.shape == (1, 32, 8, 8) and recorder.calls == 2 * 4  # 2 steps, 4 layers
    # each query's attention is a softmax over the tokens: one unit per pixel, after the mean
    # over heads, the bilinear upsampling and the mean over layers and steps
    assert torch.allclose(maps.sum(1), torch.ones(1, 8, 8), atol=1e-5)
    words = [attention.word_map(maps[0], recorder.words, [w], (16, 16))
             for w in dict.fromkeys(w for w, _ in recorder.words)]
    assert [w.word for w in words] == list(dict.fromkeys(attention.prompt_words(PROMPT)))
    for w in words:
        assert w.image.shape == (16, 16) and float(w.image.max()) == pytest.approx(1.0)
        assert float(w.image.min()) == 0 and 0 < w.share < 1
    assert sum(w.share for w in words) < 1  # the start and end tokens take the rest
    assert result.images[0].size == (16, 16)


def test_attention_view_same_seed_same_maps_and_the_image_generate_makes(tiny, tmp_path):
    a = attention.explain(tiny, PROMPT, "red circle", steps=3, seed=4, out_dir=tmp_path / "a")
    b = attention.explain(tiny, PROMPT, "red circle", steps=3, seed=4, out_dir=tmp_path / "b")
    assert torch.equal(a.chosen.latent, b.chosen.latent)
    assert a.overlay_path.read_bytes() == b.overlay_path.read_bytes()
    assert [p.read_bytes() for p, _ in a.strip] == [p.read_bytes() for p, _ in b.strip]
    # two words: their maps summed
    red = next(w for w in a.words if w.word == "red").latent
    circle = next(w for w in a.words if w.word == "circle").latent
    assert torch.allclose(a.chosen.latent, red + circle)
    assert a.overlay.size == (256, 256) and len(a.strip) == len(set(attention.prompt_words(
        PROMPT)))
    assert a.record["params"]["word"] == "red circle" and a.record["seed"] == 4
    plain = inf.generate(tiny, PROMPT, steps=3, seed=4, out_dir=tmp_path / "c")
    assert a.image_path.read_bytes() != plain.paths[0].read_bytes()  # the record differs...
    from PIL import Image  # ...the pixels do not: the recording leaves the sampling alone

    assert (pixels(Image.open(a.image_path)) == pixels(plain.images[0])).all()
    c = attention.explain(tiny, PROMPT, "circle", steps=3, seed=6, out_dir=tmp_path / "d")
    assert not torch.equal(c.chosen.latent, circle)


def test_a_pipeline_without_cross_attention_says_it_cannot_be_hooked():
    from types import SimpleNamespace

    with pytest.raises(UserInputError, match="no UNet with a text tokenizer"):
        attention.cross_attention_layers(SimpleNamespace(transformer=torch.nn.Linear(2, 2)))
    unet = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3))
    with pytest.raises(UserInputError, match="no cross-attention layers"):
        attention.cross_attention_layers(SimpleNamespace(unet=unet, tokenizer=object()))


# ---- X/Y grid --------------------------------------------------------------------------------

def test_grid_values_parse_and_bad_ones_are_refused():
    assert grid.parse_values("Seed", "1-3, 7", PROMPT) == [1, 2, 3, 7]
    assert grid.parse_values("Guidance", "1, 4.5", PROMPT) == [1.0, 4.5]
    assert grid.parse_values("Scheduler", "ddim, Euler ancestral", PROMPT) == [
        "DDIM", "Euler ancestral"]
    assert grid.parse_values("Prompt S/R", "red, green, blue", PROMPT) == ["red", "green", "blue"]
    for axis, text, message in [
            ("Colour", "1", "Unknown axis"), ("Seed", " ", "Give the Seed axis some values"),
            ("Steps", "0", "Steps must be between 1 and 100"), ("Steps", "5-2", "must go up"),
            ("Guidance", "x", "Guidance must be a number"),
            ("Scheduler", "LMS", "Unknown scheduler 'LMS'"),
            ("Prompt S/R", "purple, green", "'purple', is what gets replaced"),
            ("Variation strength", "2", "between 0.0 and 1.0")]:
        with pytest.raises(UserInputError, match=message):
            grid.parse_values(axis, text, PROMPT)


def test_grid_caps_and_axis_choices_are_clear_errors(tiny):
    with pytest.raises(UserInputError, match=r"5 x 4 = 20 cells; this shared server makes at "
                                              r"most 16"):
        grid.plan_grid(tiny, PROMPT, "Seed", "0-3", "Guidance", "1, 2, 3, 4, 5", steps=2)
    with pytest.raises(UserInputError, match="at most 400 per grid"):
        grid.plan_grid(tiny, PROMPT, "Steps", "100, 100, 100, 100, 100", steps=2)
    with pytest.raises(UserInputError, match="two different settings"):
        grid.plan_grid(tiny, PROMPT, "Seed", "1, 2", "Seed", "3", steps=2)
    with pytest.raises(UserInputError, match="Set a variation seed"):
        grid.plan_grid(tiny, PROMPT, "Variation strength", "0, 1", steps=2)
    with pytest.raises(UserInputError, match="Unknown model"):
        grid.plan_grid("no-such-model", PROMPT, "Seed", "1", steps=2)


def _grid(tiny, out_dir, **kwargs):
    settings = {"steps": 2, "seed": 0, **kwargs}
    axes = settings.pop("axes", ("Guidance", "1, 5, 9", "Seed", "3, 4"))
    plan = grid.plan_grid(tiny, PROMPT, *axes, **settings)
    return list(grid.run_grid(plan, out_dir=out_dir))


def test_grid_has_rows_x_cols_cells_equal_to_single_runs_and_labels(tiny, tmp_path):
    from playground.txt2img import drawing

    steps = _grid(tiny, tmp_path)
    final = steps[-1]
    assert [s.done for s in steps] == [1, 2, 3, 4, 5, 6] and final.path.exists()
    assert len(final.cells) == 2 * 3
    layout = drawing.grid_layout(final.cells, 3, ["Seed: 3", "Seed: 4"], grid.CELL_SIDE)
    assert (layout.rows, layout.columns) == (2, 3)
    assert final.image.size == (layout.left + 3 * (192 + 4), layout.top + 2 * (192 + 4))
    canvas = pixels(final.image)
    for i, (seed, guidance) in enumerate((s, g) for s in (3, 4) for g in (1, 5, 9)):
        single = inf.generate(tiny, PROMPT, steps=2, guidance=guidance, seed=seed,
                              show_steps=False, out_dir=tmp_path)
        assert (pixels(final.cells[i]) == pixels(single.images[0])).all(), (seed, guidance)
        x0, y0, x1, y1 = layout.box(i)
        drawn = pixels(preview.upscale(single.images[0], grid.CELL_SIDE))
        assert (canvas[y0:y1, x0:x1] == drawn).all()
    # labels: dark text in the band above every column and left of every row
    for c in range(3):
        x0, _, x1, _ = layout.box(c)
        assert (canvas[:layout.top, x0:x1] < 128).any()
    for r in range(2):
        _, y0, _, y1 = layout.box(3 * r)
        assert (canvas[y0:y1, :layout.left] < 128).any()
    params = final.record["params"]
    assert (params["x_axis"], params["x_values"]) == ("Guidance", [1.0, 5.0, 9.0])
    assert (params["y_axis"], params["y_values"], params["cells_made"]) == ("Seed", [3, 4], 6)
    from playground.core import repro

    assert repro.read_png_record(final.path) == final.record


def test_same_seed_same_grid_pixels(tiny, tmp_path):
    axes = ("Scheduler", "DDIM, Euler ancestral", "Variation strength", "0, 0.5")
    a = _grid(tiny, tmp_path / "a", axes=axes, variation_seed=8)[-1]
    b = _grid(tiny, tmp_path / "b", axes=axes, variation_seed=8)[-1]
    c = _grid(tiny, tmp_path / "c", axes=axes, variation_seed=8, seed=1)[-1]
    assert (pixels(a.image) == pixels(b.image)).all()
    from PIL import Image

    assert (pixels(Image.open(a.path)) == pixels(Image.open(b.path))).all()
    assert not (pixels(a.image) == pixels(c.image)).all()
    assert a.record["params"]["variation_seed"] == 8


def test_grid_prompt_search_replace_and_one_row(tiny, tmp_path):
    final = _grid(tiny, tmp_path, axes=("Prompt S/R", "red, green", "none", ""))[-1]
    assert len(final.cells) == 2
    green = inf.generate(tiny, PROMPT.replace("red", "green"), steps=2, seed=0,
                         show_steps=False, out_dir=tmp_path)
    red = inf.generate(tiny, PROMPT, steps=2, seed=0, show_steps=False, out_dir=tmp_path)
    assert (pixels(final.cells[0]) == pixels(red.images[0])).all()
    assert (pixels(final.cells[1]) == pixels(green.images[0])).all()
    assert final.record["params"]["y_values"] == []


def test_stop_ends_the_grid_with_the_cells_made(tiny, tmp_path):
    made = []
    plan = grid.plan_grid(tiny, PROMPT, "Seed", "0-5", steps=2)
    steps = []
    for step in grid.run_grid(plan, stop=lambda: len(made) >= 2, out_dir=tmp_path):
        made.append(step)
        steps.append(step)
    final = steps[-1]
    assert final.record["params"]["cells_made"] == 2 and "Stopped: 2 of 6" in final.notes[0]
    assert final.cells[2:] == [None] * 4


# ---- the views' handlers and models ---------------------------------------------------

def test_attention_and_grid_handlers_and_their_errors(tiny):
    import gradio as gr

    from playground.txt2img import tab_inside as inside

    overlay, strip, info, record = inside.run_attention(
        tiny, PROMPT, "", 2, 4.0, "DDIM", 16, 16, 0, False, 0.0, 1000, "circle")
    assert overlay.endswith(".png") and len(strip) == 11 and strip[3][1].startswith("circle · ")
    assert "*circle* received" in info and record["params"]["word"] == "circle"
    with pytest.raises(gr.Error, match="not a word of the prompt"):
        inside.run_attention(tiny, PROMPT, "", 2, 4.0, "DDIM", 16, 16, 0, False, 0.0, 1000,
                             "zebra")
    updates = list(inside.run_grid_view(tiny, PROMPT, "", 2, 4.0, "DDIM", 16, 16, 0, False,
                                        0.0, 1000, None, 0.0, "Seed", "0-2", "none", ""))
    assert len(updates) == 3 and updates[-1][2]["params"]["cells_made"] == 3
    assert "3/3 cells" in updates[-1][1]
    with pytest.raises(gr.Error, match="at most 16"):
        list(inside.run_grid_view(tiny, PROMPT, "", 2, 4.0, "DDIM", 16, 16, 0, False, 0.0, 1000,
                                  None, 0.0, "Seed", "0-9", "Guidance", "1, 2"))
    assert inside.words_of("a big zebra", "circle")["value"] == "zebra"
    assert inside.words_of("a red circle", "circle")["value"] == "circle"


def test_views_work_with_a_model_trained_in_the_app_for_its_session_only(tiny, tmp_path):
    """A model a session trained is a session-owned registry entry: its owner's views find it
    (the attention view and the grid here), another session's do not."""
    from playground.core import sessions

    source = registry.resolve(inf.FAMILY, tiny).path
    registry.register(registry.ModelEntry("my-t2i", inf.FAMILY, path=source, owner="sam"))
    with sessions.use_session("sam"):
        view = attention.explain("my-t2i", PROMPT, "red", steps=2, seed=0, out_dir=tmp_path)
        final = list(grid.run_grid(grid.plan_grid("my-t2i", PROMPT, "Seed", "0, 1", steps=2),
                                   out_dir=tmp_path))[-1]
    assert view.record["model"] == "my-t2i" and final.record["params"]["cells_made"] == 2
    with sessions.use_session("tom"), pytest.raises(UserInputError, match="Unknown model"):
        attention.explain("my-t2i", PROMPT, "red", steps=2)
