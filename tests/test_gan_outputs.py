"""GAN output files: fresh names in the requesting session's folder, records on every file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from playground.core import repro, sessions
from playground.gan import FAMILY, SHIPPED, register_models
from playground.gan.inference import interpolate_faces, sample_faces

register_models()


def test_outputs_are_unique_per_request_and_live_in_the_session_folder():
    with sessions.use_session("gan-user-a"):
        a1 = sample_faces(SHIPPED, seed=3, n=2)
        a2 = sample_faces(SHIPPED, seed=3, n=2)  # same seed, same settings: new files
        folder_a = sessions.output_dir(FAMILY)
    with sessions.use_session("gan-user-b"):
        b = sample_faces(SHIPPED, seed=3, n=2)
        strip = interpolate_faces(SHIPPED, 3, 4, frames=3)
        folder_b = sessions.output_dir(FAMILY)
    files_a = [a1.grid_png, *a1.face_pngs, a2.grid_png, *a2.face_pngs]
    files_b = [b.grid_png, *b.face_pngs, strip.strip_png, strip.gif]
    assert len(set(files_a + files_b)) == len(files_a + files_b) == 11
    assert all(str(f).startswith(str(folder_a)) for f in files_a)
    assert all(str(f).startswith(str(folder_b)) for f in files_b)
    # the same request gives the same pixels under another name
    assert np.array_equal(np.asarray(Image.open(a1.grid_png)), np.asarray(Image.open(b.grid_png)))
    sessions.end_session("gan-user-a")  # the tab closed: its files go, the other's stay
    assert not any(Path(f).exists() for f in files_a)
    assert all(Path(f).exists() for f in files_b)
    sessions.end_session("gan-user-b")


def test_each_face_png_reproduces_that_face_alone():
    out = sample_faces(SHIPPED, seed=10, n=3, psi=0.8)
    for png, seed, face in zip(out.face_pngs, out.seeds, out.images, strict=True):
        record = repro.read_png_record(png)
        assert record["seed"] == seed and record["params"] == {"psi": 0.8, "n": 1,
                                                               "seeds": [seed]}
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(face))
        again = sample_faces(SHIPPED, seed_list=str(record["params"]["seeds"][0]),
                             psi=record["params"]["psi"])
        assert np.array_equal(np.asarray(again.images[0]), np.asarray(face))


def test_the_gif_carries_the_record_of_the_strip():
    out = interpolate_faces(SHIPPED, 1, 2, frames=4, mode="linear")
    comment = Image.open(out.gif).info["comment"]
    assert json.loads(comment) == repro.read_png_record(out.strip_png) == out.record
