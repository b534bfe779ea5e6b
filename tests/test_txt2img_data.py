"""Shapes dataset, adherence checker and the offline CLIP tokenizer."""

from __future__ import annotations

import random

import numpy as np
import pytest

from playground.txt2img import adherence
from playground.txt2img.shapes import (
    HELD_OUT_PAIRS,
    Obj,
    Scene,
    caption_words,
    eval_scenes,
    make_dataset,
    render,
)


def test_dataset_is_deterministic_and_excludes_held_out_pairs():
    a, scenes_a = make_dataset(200, seed=3)
    b, scenes_b = make_dataset(200, seed=3)
    assert a.shape == (200, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and scenes_a == scenes_b
    assert not any(s.has_held_out_pair() for s in scenes_a)
    assert any(len(s.objects) == 2 for s in scenes_a)
    assert all(o.colour != s.background for s in scenes_a for o in s.objects)
    held = eval_scenes(50)
    assert all(s.has_held_out_pair() for s in held)
    assert {(o.colour, o.shape) for s in held for o in s.objects} & HELD_OUT_PAIRS


def test_caption_is_compositional():
    scene = Scene((Obj("circle", "red", "small", "top left"),
                   Obj("star", "blue", "large", "bottom right")), "gray")
    assert scene.caption == ("a small red circle at the top left and a large blue star at the "
                             "bottom right on a gray background")


def test_checker_is_right_on_the_datasets_own_images():
    images, scenes = make_dataset(150, seed=11)
    scores = adherence.score(scenes, list(images))
    assert scores["all"] == 1.0, scores
    held = eval_scenes(40, seed=5)
    rendered = [render(s, random.Random(i)) for i, s in enumerate(held)]
    assert adherence.score(held, rendered)["all"] == 1.0


@pytest.mark.parametrize("attribute,wrong", [
    ("colour", Obj("circle", "green", "large", "center")),
    ("shape", Obj("square", "red", "large", "center")),
    ("size", Obj("circle", "red", "small", "center")),
    ("position", Obj("circle", "red", "large", "top left")),
])
def test_checker_catches_each_wrong_attribute(attribute, wrong):
    asked = Scene((Obj("circle", "red", "large", "center"),), "black")
    image = render(Scene((wrong,), "black"))
    result = adherence.check(asked, image)
    assert result[attribute] is False and result["all"] is False
    assert result["background"] is True
    assert adherence.check(asked, render(Scene((wrong,), "white")))["background"] is False


def test_checker_on_an_empty_image_fails_objects():
    result = adherence.check(Scene((Obj("star", "red", "small", "center"),), "gray"),
                             np.full((64, 64, 3), 128, np.uint8))
    assert result["background"] and not result["colour"] and not result["shape"]


def test_tokenizer_is_a_real_clip_bpe(tmp_path):
    from transformers import CLIPTokenizer

    from playground.txt2img.tokenizer import build_tokenizer

    tok = build_tokenizer(caption_words(), 32)
    tok.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    ids = loaded("a small red circle").input_ids
    assert loaded.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "a</w>", "small</w>", "red</w>", "circle</w>", "<|endoftext|>"]
    for word in caption_words():  # every caption word is one CLIP token, as in full CLIP
        assert len(loaded(word).input_ids) == 3, word
    odd = loaded("héllo 🐱 zebra").input_ids  # unknown text splits into pieces, never <unk>
    assert len(odd) > 5 and loaded.unk_token_id not in odd[1:-1]
    padded = loaded("a star", padding="max_length", max_length=32).input_ids
    assert len(padded) == 32 and padded[-1] == loaded.eos_token_id


def test_balanced_batches_hold_the_share_and_see_every_item_once_per_pass():
    from playground.txt2img.shapes import balanced_batches

    flags = [i % 10 < 3 for i in range(100)]  # 30 in the group, 70 outside
    batches = balanced_batches(flags, batch=8, share=0.5, seed=0)
    seen_in, seen_out = [], []
    for _ in range(30):  # 120 group items: 4 passes over the 30; 120 of 70 outside: 1.7 passes
        b = next(batches).tolist()
        assert len(b) == 8 and sum(flags[i] for i in b) == 4
        seen_in += [i for i in b if flags[i]]
        seen_out += [i for i in b if not flags[i]]
    group = sorted(i for i in range(100) if flags[i])
    for k in range(4):
        assert sorted(seen_in[30 * k:30 * (k + 1)]) == group
    assert sorted(seen_out[:70]) == sorted(i for i in range(100) if not flags[i])
    again = balanced_batches(flags, batch=8, share=0.5, seed=0)
    assert next(again).tolist() == next(balanced_batches(flags, 8, 0.5, 0)).tolist()
    from playground.core.errors import UserInputError

    with pytest.raises(UserInputError, match="0 two-object and 10 one-object"):
        balanced_batches([False] * 10, batch=4, share=0.5, seed=0)  # at once, not at next()
    with pytest.raises(UserInputError, match="object count"):
        balanced_batches(None, batch=4, share=0.5, seed=0)


def test_the_unet_stage_draws_half_its_batch_from_two_object_scenes():
    from playground.txt2img.train import resolve_config

    cfg = resolve_config("tiny", {"two_object_share": 0.5})
    assert cfg.two_object_share == 0.5 and resolve_config("shapes2").two_object_share == 0.5
    with pytest.raises(Exception, match="two_object_share"):
        resolve_config("tiny", {"two_object_share": 1.5})
