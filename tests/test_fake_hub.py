"""The fake hub (tests/fake_hub.py) serves weights/ folders as hub repos: every loader the app
uses gets, from a cold cache, exactly what it loads from the local folder; a warm cache asks
only for metadata; missing repos/files/revisions raise the library's own errors; a dead server
fails fast where huggingface_hub lets it (see test_stopped_server_*)."""

from __future__ import annotations

import time
import types
from pathlib import Path

import httpx
import httpx2  # huggingface_hub 2.x talks through httpx2 and raises its errors
import pytest
import torch
from huggingface_hub import (
    hf_hub_download,
    list_repo_tree,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url, http_get

from tests.fake_hub import HUB_REPOS, FakeHub

pytest_plugins = ["tests.hub_fixtures"]  # the fake_hub and hub_cache fixtures

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
ROOT = Path(__file__).resolve().parents[1]
FIRST_GPT_SHARD = sorted(p.name for p in (ROOT / "weights" / "gpt-austen").glob("model-*"))[0]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and len(sa) > 0
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


# ---- the hub API itself ------------------------------------------------------------------

def test_model_info_sha_and_siblings(fake_hub, hub_cache):
    folder = HUB_REPOS["test/flow-8gaussians"]
    info = model_info("test/flow-8gaussians", files_metadata=True)
    assert info.id == "test/flow-8gaussians" and info.private is False
    assert len(info.sha) == 40 and int(info.sha, 16) >= 0
    assert info.sha == fake_hub.repos["test/flow-8gaussians"].sha
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {name: len(data) for name, data in files_of(folder).items()}
    lfs = {s.rfilename for s in info.siblings if s.lfs is not None}
    assert lfs == {"model.safetensors", "density.png", "samples.png"}
    assert model_info("test/flow-8gaussians", revision=info.sha).sha == info.sha
    # same content -> same sha, whatever the server instance; other content -> another sha
    assert FakeHub({"test/flow-8gaussians": folder}).repos["test/flow-8gaussians"].sha == info.sha
    assert model_info("test/gan-olivetti").sha != info.sha


def test_list_repo_tree(fake_hub, hub_cache):
    top = {(e.path, type(e).__name__) for e in list_repo_tree("test/txt2img-shapes")}
    assert ("unet", "RepoFolder") in top and ("model_index.json", "RepoFile") in top
    assert not any("/" in path for path, _ in top)
    deep = {e.path: e for e in list_repo_tree("test/txt2img-shapes", recursive=True)}
    local = files_of(HUB_REPOS["test/txt2img-shapes"])
    assert {p for p, e in deep.items() if type(e).__name__ == "RepoFile"} == set(local)
    unet = deep["unet/diffusion_pytorch_model.safetensors"]
    assert unet.size == len(local["unet/diffusion_pytorch_model.safetensors"]) and unet.lfs
    sub = [e.path for e in list_repo_tree("test/txt2img-shapes", "unet")]
    assert sorted(sub) == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]


def test_hf_hub_download_cold_then_warm(fake_hub, hub_cache):
    folder = HUB_REPOS["test/vae-olivetti"]
    path = hf_hub_download("test/vae-olivetti", "model.safetensors")
    assert Path(path).read_bytes() == (folder / "model.safetensors").read_bytes()
    assert Path(path).is_relative_to(hub_cache)
    assert fake_hub.downloads() == ["/test/vae-olivetti/resolve/main/model.safetensors"]
    assert fake_hub.bytes_served == (folder / "model.safetensors").stat().st_size
    sha = fake_hub.repos["test/vae-olivetti"].sha
    assert f"/snapshots/{sha}/" in path
    repo_dir = hub_cache / "models--test--vae-olivetti"
    assert (repo_dir / "refs" / "main").read_text() == sha
    # the blob is named by its ETag: sha256 for LFS-like files, as on the real hub
    assert (repo_dir / "blobs" / fake_hub.repos["test/vae-olivetti"].files[
        "model.safetensors"].sha256).is_file()
    fake_hub.reset_counts()
    assert hf_hub_download("test/vae-olivetti", "model.safetensors") == path
    assert fake_hub.bytes_served == 0
    assert fake_hub.calls() == ["HEAD resolve model.safetensors"]


def test_snapshot_download_matches_folder(fake_hub, hub_cache):
    folder = HUB_REPOS["test/gan-olivetti"]
    snap = Path(snapshot_download("test/gan-olivetti"))
    assert files_of(snap) == files_of(folder)
    assert snap.name == fake_hub.repos["test/gan-olivetti"].sha
    assert fake_hub.bytes_served == sum(len(d) for d in files_of(folder).values())
    fake_hub.reset_counts()
    assert Path(snapshot_download("test/gan-olivetti")) == snap
    assert fake_hub.bytes_served == 0


def test_range_resume(fake_hub, hub_cache, tmp_path):
    data = (HUB_REPOS["test/flow-8gaussians"] / "model.safetensors").read_bytes()
    url = hf_hub_url("test/flow-8gaussians", "model.safetensors")
    part = tmp_path / "part"
    part.write_bytes(data[:1000])
    with part.open("ab") as fh:  # as a resumed download: the first 1000 bytes are there
        http_get(url, fh, resume_size=1000, expected_size=len(data))
    assert part.read_bytes() == data
    reply = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert reply.status_code == 206 and reply.content == data[10:20]
    assert reply.headers["Content-Range"] == f"bytes 10-19/{len(data)}"


def test_progress_with_delay(fake_hub, hub_cache, monkeypatch):
    """http_get reports progress per DOWNLOAD_CHUNK_SIZE (10 MiB) read, so a file under 10 MiB
    (all of ours) is one jump at its end; a smaller chunk size shows the slow body arriving."""
    from huggingface_hub import constants
    from tqdm.auto import tqdm

    updates: list[int] = []

    class Recorder(tqdm):
        def update(self, n=1):
            updates.append(int(n or 0))
            return super().update(n)

    size = (HUB_REPOS["test/flow-8gaussians"] / "model.safetensors").stat().st_size
    hf_hub_download("test/flow-8gaussians", "model.safetensors", tqdm_class=Recorder)
    assert updates == [size]
    updates.clear()
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    fake_hub.delay_per_chunk = 0.05
    start = time.monotonic()
    hf_hub_download("test/flow-8gaussians", "model.safetensors", tqdm_class=Recorder,
                    force_download=True)
    assert sum(updates) == size and len(updates) == -(-size // (64 * 1024))
    assert time.monotonic() - start >= 0.05 * (size // (64 * 1024))


# ---- errors ------------------------------------------------------------------------------

def test_missing_repo_file_revision(fake_hub, hub_cache):
    with pytest.raises(RepositoryNotFoundError):
        model_info("test/no-such-model")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("test/no-such-model", "config.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("test/flow-8gaussians", "no_such_file.bin")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("test/flow-8gaussians", "config.json", revision="v9")
    with pytest.raises(RevisionNotFoundError):
        model_info("test/flow-8gaussians", revision="0" * 40)
    # the hub's X-Repo-Commit on a 404 lets the library remember the file is absent
    sha = fake_hub.repos["test/flow-8gaussians"].sha
    assert (hub_cache / "models--test--flow-8gaussians" / ".no_exist" / sha
            / "no_such_file.bin").exists()


def test_stalled_server_bounded_by_etag_timeout(fake_hub, hub_cache, monkeypatch):
    """A server that accepts but never answers: a HEAD waits HF_HUB_ETAG_TIMEOUT, no more."""
    from huggingface_hub import constants

    # huggingface_hub fetches /api/agent-harnesses once per process (3 s timeout) on its first
    # request: answer it before the server stalls, or that wait adds to the HEAD's
    model_info("test/flow-8gaussians")
    fake_hub.hang = True
    url = hf_hub_url("test/flow-8gaussians", "config.json")
    start = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        get_hf_file_metadata(url, timeout=1)
    assert time.monotonic() - start < 3
    assert constants.HF_HUB_ETAG_TIMEOUT == 10  # the default a plain call waits
    fake_hub.hang = False


def test_stopped_server_api_calls_fail_fast(fake_hub, hub_cache):
    fake_hub.stop()
    start = time.monotonic()
    with pytest.raises(httpx2.ConnectError):
        model_info("test/flow-8gaussians")
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("test/flow-8gaussians")
    assert time.monotonic() - start < 2


def test_stopped_server_hf_hub_download_backs_off(fake_hub, hub_cache, monkeypatch):
    """Quirk: on a cold cache hf_hub_download retries a refused HEAD 5 times, sleeping
    1+2+4+8+8 = 23 s (http_backoff's defaults, no env variable bounds them; HF_HUB_ETAG_TIMEOUT
    bounds each request, not the sleeps). The app must probe reachability before loading."""
    from huggingface_hub.utils import _http

    slept: list[float] = []
    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=slept.append))
    fake_hub.stop()
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("test/flow-8gaussians", "config.json")
    assert slept == [1, 2, 4, 8, 8]


def test_server_stopped_mid_download(fake_hub, hub_cache, monkeypatch):
    """stop() cuts a slow body: the download raises within ~5 s (sleeps stubbed here) and no
    blob is left in the cache."""
    import threading

    from huggingface_hub import file_download

    slept: list[float] = []
    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=slept.append))
    fake_hub.delay_per_chunk = 0.05  # an 8 MB shard in 64 KiB chunks: ~6.5 s
    errors: list[BaseException] = []

    def download() -> None:
        try:
            hf_hub_download("test/gpt-austen", FIRST_GPT_SHARD)
        except BaseException as exc:  # noqa: BLE001 - recorded for the asserts
            errors.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    time.sleep(0.5)
    start = time.monotonic()
    fake_hub.stop()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - start < 5
    assert len(errors) == 1, errors
    # the cut body is a RemoteProtocolError, which http_get resumes 5 times, 1 s apart; each
    # resume is refused, and the last refusal is raised
    assert isinstance(errors[0], httpx2.ConnectError) and slept == [1] * 5, (errors, slept)
    blobs = list((hub_cache / "models--test--gpt-austen" / "blobs").iterdir())
    assert all(b.name.endswith(".incomplete") for b in blobs)


def test_stopped_server_app_registry_fails_fast(fake_hub, hub_cache, monkeypatch):
    """The app's own path: registry.hub_reachable() probes HF_ENDPOINT's host and port, so a
    stopped fake hub is 'offline' at once and a hub load fails well inside 10 s."""
    from playground.core import registry
    from playground.core.errors import ModelLoadError
    from playground.flow.model import FlowModel

    monkeypatch.setattr(registry, "_reach_cache", {})  # cached for 60 s otherwise
    assert registry.hub_address() == ("127.0.0.1", fake_hub.port)
    assert registry.hub_reachable()
    fake_hub.stop()
    monkeypatch.setattr(registry, "_reach_cache", {})
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot reach the hub"):
        registry.load_model("flow", "test/flow-8gaussians", FlowModel.from_pretrained,
                            key="fake-hub-stopped")
    assert time.monotonic() - start < 10
    assert not registry.hub_reachable()


# ---- every loader the app uses: hub == local folder ----------------------------------------

def test_gpt_from_hub_equals_local(fake_hub, hub_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = HUB_REPOS["test/gpt-austen"]
    tok_hub, tok_local = (AutoTokenizer.from_pretrained(s) for s in ("test/gpt-austen", local))
    text = "It is a truth universally acknowledged"
    assert tok_hub(text)["input_ids"] == tok_local(text)["input_ids"]
    lm_hub = AutoModelForCausalLM.from_pretrained("test/gpt-austen", dtype=torch.float32)
    lm_local = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32)
    assert_same_weights(lm_hub, lm_local)
    ids = torch.tensor([tok_local(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(lm_hub(ids).logits, lm_local(ids).logits)
    served = {p.rsplit("/", 1)[-1] for p in fake_hub.downloads()}
    shards = {p.name for p in (ROOT / "weights" / "gpt-austen").glob("model-*.safetensors")}
    assert len(shards) >= 2 and shards | {"tokenizer.json"} <= served


def test_diffusion_pipeline_from_hub_equals_local(fake_hub, hub_cache):
    from diffusers import DiffusionPipeline

    def load(source):  # fp32: today's weights are fp16 on disk (issue 21, deliverable 3)
        return DiffusionPipeline.from_pretrained(source, torch_dtype=torch.float32)

    hub, local = load("test/txt2img-shapes"), load(HUB_REPOS["test/txt2img-shapes"])
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(hub, name), getattr(local, name))
    cold_bytes = fake_hub.bytes_served
    assert cold_bytes > 7_000_000  # both UNets, the VAE and the text encoder came over

    def image(pipe):
        out = pipe("a red circle", num_inference_steps=2, output_type="np",
                   generator=torch.Generator().manual_seed(0))
        return out.images

    assert (image(hub) == image(local)).all()
    fake_hub.reset_counts()
    load("test/txt2img-shapes")  # warm: metadata only
    assert fake_hub.bytes_served == 0 and fake_hub.downloads() == []


def test_autoencoderkl_from_hub_equals_local(fake_hub, hub_cache):
    from diffusers import AutoencoderKL

    hub = AutoencoderKL.from_pretrained("test/txt2img-vae")
    local = AutoencoderKL.from_pretrained(HUB_REPOS["test/txt2img-shapes"], subfolder="vae")
    assert_same_weights(hub, local)
    z = torch.randn(1, hub.config.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(hub.float().decode(z).sample, local.float().decode(z).sample)


def _flow(source):
    from playground.flow.inference import _load

    return _load(source)


def _gan(source):
    from playground.gan.inference import load_generator_source

    return load_generator_source(source)


def _conv_vae(source):
    from playground.vae.codec import load_conv

    return load_conv(source).model


@pytest.mark.parametrize("repo_id, loader", [("test/flow-8gaussians", _flow),
                                             ("test/gan-olivetti", _gan),
                                             ("test/vae-olivetti", _conv_vae)])
def test_own_models_from_hub_equal_local(fake_hub, hub_cache, repo_id, loader):
    """PyTorchModelHubMixin classes, loaded the way each family's inference module does."""
    hub, local = loader(repo_id), loader(str(HUB_REPOS[repo_id]))
    assert type(hub) is type(local)
    assert_same_weights(hub, local)
    assert fake_hub.downloads() == [f"/{repo_id}/resolve/main/config.json",
                                    f"/{repo_id}/resolve/main/model.safetensors"]


def test_hub_environment_restores_everything(tmp_path):
    """Outside the fixture huggingface_hub talks to its usual endpoint and cache again."""
    import os

    from huggingface_hub import constants, hf_api

    from tests.hub_fixtures import hub_environment

    names = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HOME", "HF_HUB_CACHE",
             "HF_TOKEN_PATH", "AGENT_HARNESSES_PATH", "HF_HUB_OFFLINE")
    before = ({n: getattr(constants, n) for n in names}, hf_api.api.endpoint,
              {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE")})
    with hub_environment("http://127.0.0.1:9/", tmp_path, timeout_s=2):
        assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith("http://127.0.0.1:9/{repo_id}")
        assert hf_api.api.endpoint == os.environ["HF_ENDPOINT"] == "http://127.0.0.1:9"
        assert constants.HF_TOKEN_PATH == str(tmp_path / "token")
        assert constants.HF_HUB_ETAG_TIMEOUT == 2
    after = ({n: getattr(constants, n) for n in names}, hf_api.api.endpoint,
             {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE")})
    assert after == before
    assert "127.0.0.1" not in constants.ENDPOINT
