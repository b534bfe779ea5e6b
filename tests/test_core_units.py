"""Core units: device, seeds, registry (incl. path traversal), repro records, atomic save."""

from __future__ import annotations

import json
import time

import pytest
import torch
from PIL import Image

from playground.core import device, registry, repro, seeding
from playground.core.atomic import atomic_save_dir
from playground.core.errors import ModelLoadError, UserInputError, check_range


def test_device_override_and_dtype(monkeypatch):
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert device.get_device().type == "cpu"
    assert device.get_device("cpu") == torch.device("cpu")
    assert device.inference_dtype(torch.device("cpu")) == torch.float32
    assert device.inference_dtype(torch.device("cuda")) == torch.float16
    assert device.mixed_precision(torch.device("cpu")) == "no"
    with pytest.raises(ValueError):
        device.set_device_override("tpu")


def test_seed_resolution():
    assert seeding.resolve_seed(42) == 42
    assert seeding.resolve_seed("18446744073709551615"[:18]) == 184467440737095516
    assert seeding.resolve_seed(7.0) == 7
    drawn = {seeding.resolve_seed(0, randomize=True) for _ in range(5)}
    assert len(drawn) > 1 and all(0 <= s < 2**31 for s in drawn)
    for bad in (-1, 2**64, 1.5, "abc", None, "", float("nan")):
        with pytest.raises(UserInputError):
            seeding.resolve_seed(bad)


def test_generator_is_per_request_and_deterministic():
    torch.manual_seed(123)
    a = seeding.randn((4, 3), 5)
    torch.manual_seed(999)  # the global RNG must not matter
    b = seeding.randn((4, 3), 5)
    assert torch.equal(a, b)
    assert not torch.equal(a, seeding.randn((4, 3), 6))


def test_check_range():
    assert check_range("steps", "12", 1, 100, integer=True) == 12
    for bad in (0, 101, "x", float("inf"), 2.5, None):
        with pytest.raises(UserInputError):
            check_range("steps", bad, 1, 100, integer=True)


@pytest.fixture
def reg():
    registry.register_weights("testfam", "shipped-model", "test entry")
    yield
    registry._REGISTRY.pop("testfam", None)
    registry.clear_cache()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/tmp/x", "~/models", "./weights/x",
                                  "C:\\models\\x", "weights/../../etc", "a/b/c", "..", "",
                                  "owner/..", "http://evil/x", "owner/na me"])
def test_registry_refuses_paths(reg, name):
    with pytest.raises(UserInputError):
        registry.resolve("testfam", name)


def test_registry_names_and_hub_ids(reg):
    entry = registry.resolve("testfam", "shipped-model")
    assert entry.is_local and entry.path == registry.WEIGHTS_DIR / "shipped-model"
    hub = registry.resolve("testfam", "stabilityai/sd-turbo")
    assert not hub.is_local and hub.hub_id == "stabilityai/sd-turbo"
    assert registry.choices("testfam") == ["shipped-model"]


def test_missing_local_model_is_clear(reg):
    with pytest.raises(ModelLoadError, match="not installed"):
        registry.load_model("testfam", "shipped-model", lambda src: object())


def test_offline_hub_id_fails_fast_and_clearly(monkeypatch, reg):
    monkeypatch.setattr(registry, "_reach_cache", {})
    calls = []

    def loader(source):
        from transformers import AutoConfig
        calls.append(source)
        return AutoConfig.from_pretrained(source)

    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        registry.load_model("testfam", "someone/definitely-not-cached-model", loader)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10, elapsed
    message = str(info.value)
    assert "someone/definitely-not-cached-model" in message
    assert "offline" in message.lower()


def test_model_cache_returns_same_object(tmp_path, reg):
    registry.register(registry.ModelEntry("cached", "testfam", path=tmp_path))
    loads = []
    first = registry.load_model("testfam", "cached", lambda src: loads.append(src) or object())
    second = registry.load_model("testfam", "cached", lambda src: loads.append(src) or object())
    assert first is second and loads == [str(tmp_path)]


def test_png_record_round_trip(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    record = repro.make_record("fam", "m", str(tmp_path / "m"), {"steps": 3, "cfg": 7.5}, 42)
    assert record["model_hash"].startswith("sha256:") and record["versions"]["torch"]
    path = repro.save_png(Image.new("RGB", (8, 8), "red"), record, tmp_path / "x.png")
    back = repro.read_png_record(path)
    assert back == json.loads(repro.record_json(record))
    assert "steps: 3" in Image.open(path).text["parameters"]
    (tmp_path / "m" / "config.json").write_text('{"changed": 1}')
    assert repro.content_hash(str(tmp_path / "m")) != record["model_hash"]


def test_atomic_save_keeps_old_folder_on_failure(tmp_path):
    final = tmp_path / "weights" / "model"
    atomic_save_dir(final, lambda d: (d / "a.txt").write_text("v1"))
    assert (final / "a.txt").read_text() == "v1"

    def broken(d):
        (d / "a.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_save_dir(final, broken)
    assert (final / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in final.parent.iterdir()) == ["model"]
    atomic_save_dir(final, lambda d: (d / "b.txt").write_text("v2"))
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_bounded_memo_builds_once_and_drops_the_oldest():
    from playground.core.memo import BoundedMemo

    memo: BoundedMemo[str] = BoundedMemo(2)
    built = []

    def build(key):
        return lambda: built.append(key) or f"value {key}"

    assert memo.get("a", build("a")) == "value a"
    assert memo.get("a", build("a")) == "value a"  # kept: not built again
    memo.get("b", build("b"))
    memo.get("c", build("c"))  # full: "a" (the oldest) goes
    assert len(memo) == 2
    assert memo.get("b", build("b")) == "value b"
    memo.get("a", build("a"))
    assert built == ["a", "b", "c", "a"]
    with pytest.raises(ValueError):
        BoundedMemo(0)
