"""The "Fit an energy" view end to end: its routes by api_name (gradio_client), the live frames,
Stop (nothing saved), judging any flow of the picker, and the view in Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from playground.core import sessions
from playground.core.errors import UserInputError
from playground.core.repro import read_png_record
from tests.conftest import open_tab

TINY = ("nsf", 2, 16, 1e-2, 30, 64)  # flow type, depth, width, lr, steps, batch


def test_api_fit_energy_registers_the_fit_with_its_record(client):
    out = client.predict("banana", *TINY, True, 3, False, api_name="/flow_energy_fit")
    energy, fit, sample_fit, _loss, report, status, record = out[:7]  # the States stay behind
    name = record["model"]
    assert status.startswith("Done: step 30/30") and "seed 3" in status
    assert name.startswith("my-flow-") and "energy banana" in name
    assert record["seed"] == 3 and record["params"]["energy"] == "banana"
    assert record["params"]["command"].startswith(
        "python -m playground.train flow --preset energy --set depth=2 --set width=16")
    assert "--set energy=banana" in record["params"]["command"]
    assert read_png_record(fit)["model"] == name
    assert Image.open(energy).size == Image.open(sample_fit).size
    fits = [row[0] for row in report["data"]]
    assert fits == ["fit to the energy (reverse KL)", "fit to samples (forward KL)"]
    judged = client.predict("banana", name, 1000, 0, False, api_name="/flow_energy_judge")
    assert judged[2]["flow"] == name and 0 < judged[2]["ess"] <= 1


def test_api_bad_input(client):
    # the dropdown refuses a name it does not list (the functions say "Unknown energy")
    with pytest.raises(Exception, match="donut is not in the list of choices"):
        client.predict("donut", *TINY, True, 0, False, api_name="/flow_energy_fit")
    with pytest.raises(Exception, match="Steps must be between"):
        client.predict("ring", "nsf", 2, 16, 1e-2, 3, 64, True, 0, False,
                       api_name="/flow_energy_fit")
    with pytest.raises(Exception, match="donut is not in the list of choices"):
        client.predict("donut", "flow-8gaussians", 1000, 0, False,
                       api_name="/flow_energy_judge")
    with pytest.raises(Exception, match="less than minimum value 500"):
        client.predict("ring", "flow-8gaussians", 50, 0, False, api_name="/flow_energy_judge")


def test_judge_a_shipped_flow_fitted_to_samples():
    """The shipped flow-8gaussians (forward KL) judged against the ring energy: reproducible,
    and its figures hang together (true KL = the loss + log Z, ESS in (0, 1])."""
    from playground.flow import register_models
    from playground.flow.energy_view import judge_flow

    register_models()
    with sessions.use_session("carol"):
        a = judge_flow("ring", "flow-8gaussians", n_samples=1000, seed=2)
        b = judge_flow("ring", "flow-8gaussians", n_samples=1000, seed=2)
    assert a.energy != b.energy  # fresh files in the session's folder, never rewritten
    assert a.energy.startswith(str(sessions.output_dir("flow", "carol")))
    m = a.metrics
    assert m == b.metrics
    assert np.array_equal(np.asarray(Image.open(a.energy)), np.asarray(Image.open(b.energy)))
    assert m["reverse_kl"] == pytest.approx(m["reverse_kl_up_to_log_z"] + m["log_z"], abs=2e-4)
    assert m["reverse_kl"] > 0.5 and 0 < m["ess"] <= 1  # 8 blobs are not a ring
    assert read_png_record(a.density)["params"]["energy"] == "ring"
    with pytest.raises(UserInputError, match="Unknown energy 'donut'; choose from banana"):
        judge_flow("donut", "flow-8gaussians")
    with pytest.raises(UserInputError, match="Unknown model"):
        judge_flow("ring", "../weights/flow-rings")


def test_judging_asks_for_a_zerogpu_slot_that_grows_with_the_samples():
    from playground.core import zerogpu
    from playground.flow import tab  # noqa: F401  (decorating registers the handler)

    slot = zerogpu.HANDLERS["playground.flow.tab.judge_energy"].duration
    assert 5 <= slot("ring", "flow-rings", 500, 0, False) < slot("ring", "flow-rings", 20_000,
                                                                  0, False) <= 120


def test_stop_saves_nothing():
    from playground.core import registry
    from playground.flow import FAMILY
    from playground.flow.tab import fit_energy
    from playground.ui import stop_live_run

    before = set(registry.choices(FAMILY))
    gen = fit_energy("mixture", "nsf", 2, 16, 1e-3, 20_000, 64, True, 0, False)
    first = next(gen)
    run_id = first[7]
    assert stop_live_run(run_id) == "Stopped: nothing was saved."
    *_, last = gen
    assert last[5].startswith("Stopped at step") and last[5].endswith("nothing was saved.")
    assert last[8] is None and last[6] is None  # no model name, no record
    assert set(registry.choices(FAMILY)) == before


def test_live_frames_start_untrained_and_end_with_pngs(tmp_path):
    from playground.core.live import LiveRun
    from playground.flow.energy_live import EnergyLiveView, energy_config

    cfg = energy_config("mixture", "nsf", 2, 16, 1e-2, 100, 64, True)
    run = LiveRun("flow", "unused:builder", {}, "my-flow-abc", Path("unused"))
    view = EnergyLiveView(cfg, seed=4)
    empty = view.progress(run)
    assert empty.energy_fit is None and empty.report.empty and "step 0/100" in empty.status
    assert len(empty.losses) == 2  # both series named from the start (the plot's colours)
    grid = {"logq": np.zeros((8, 8))}
    run.samples += [(0, {"energy_fit": grid, "sample_fit": grid}),
                    (50, {"energy_fit": grid, "sample_fit": grid})]
    run.history.append({"step": 50, "time_s": 1.0, "loss": -1.2, "energy_fit_kl": 0.5,
                        "sample_fit_kl": 0.4, "energy_fit_reverse_kl": 0.6,
                        "energy_fit_forward_kl": 3.0, "energy_fit_ess": 0.5,
                        "energy_fit_modes_covered": 2.0, "sample_fit_reverse_kl": 0.9,
                        "sample_fit_forward_kl": 0.3, "sample_fit_ess": 0.3,
                        "sample_fit_modes_covered": 4.0})
    run.history.append({"step": 60, "time_s": 1.2, "loss": -1.3})  # no fit report here
    frame = view.progress(run)
    assert frame.status == ("Fitting: step 60/100 · 1.2 s · E_q[log q − log p̃] -1.300 · "
                            "KL(q‖p) 0.600 · ESS 0.500 · seed 4")
    assert frame.report["modes"].tolist() == ["2", "4"]
    assert set(frame.losses["series"]) == {"energy fit: KL(q‖p)", "sample fit: KL(p‖q)"}
    run.result, run.summary = "my-flow-abc", {"out_dir": str(tmp_path)}
    done = view.finished(run)
    assert read_png_record(done.energy_fit)["params"]["config"]["energy"] == "mixture"
    assert done.model_name == "my-flow-abc" and "--seed 4" in done.record["params"]["command"]


@pytest.mark.browser
def test_browser_fit_an_energy_shows_pictures(page):
    open_tab(page, "Flows")
    page.get_by_role("tab", name="Fit an energy").click()
    page.locator("#flow-energy-steps input").fill("20")
    page.locator("#flow-energy-start").click()
    page.wait_for_function("document.querySelector('#flow-energy-status').innerText"
                           ".includes('Done')", timeout=180_000)
    for box in ("#flow-energy-target", "#flow-energy-fit", "#flow-energy-sfit"):
        image = page.locator(f"{box} img").first
        image.wait_for(state="visible")
        assert image.bounding_box()["height"] > 100
    report = page.locator("#flow-energy-report")
    assert "fit to the energy (reverse KL)" in report.inner_text()
    assert "fit to samples (forward KL)" in report.inner_text()
