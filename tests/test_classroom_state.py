"""A class on one link for days: what Gradio keeps per session must not grow with each request,
nor with each session that came and went. Gradio 6.31 stored a new copy of an output (its
config and value) in the session's state every time a streamed ``gr.skip()``/``gr.update()``
was followed by a value (one GPT generation left two), and kept every closed session's state
until 10,000 sessions had come (research/memory.md). ``playground.ui`` fixes both."""

from __future__ import annotations

import time

import gradio as gr
from gradio_client import Client

import playground.ui  # noqa: F401  -- the fix is applied when the tabs' glue is imported
from tests.conftest import free_port


def _session_state(demo: gr.Blocks, client: Client):
    return demo.state_holder.session_data[client.session_hash]


def _extra_blocks(demo: gr.Blocks, client: Client) -> list[int]:
    """Ids in the session's copy of the app that the app itself does not have."""
    state = _session_state(demo, client)
    return [key for key in state.blocks_config.blocks if key not in demo.blocks]


def _streaming_app() -> tuple[gr.Blocks, gr.JSON, gr.Textbox]:
    def stream(n):
        yield gr.skip(), gr.update(label="working"), gr.skip()
        yield {"n": n, "odds": [0.5] * 200}, gr.update(label=f"done {n}"), f"text {n}"

    def count(total):
        return total + 1, total + 1

    with gr.Blocks() as demo:
        n = gr.Number(0)
        details, note, text = gr.JSON(), gr.Textbox(), gr.Textbox()
        gr.Button().click(stream, n, [details, note, text], api_name="stream")
        total, shown = gr.State(0), gr.Number()
        gr.Button().click(count, total, [total, shown], api_name="count")
    return demo, details, note


def test_streamed_skips_and_updates_leave_one_entry_per_output():
    demo, details, note = _streaming_app()
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(),
                        prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        for n in range(6):
            assert client.predict(n, api_name="/stream")[2] == f"text {n}"
        assert _extra_blocks(demo, client) == []  # 6 calls used to leave 6 + 6 copies
        state = _session_state(demo, client)
        # the session's config (deep links) holds the last value and the last update
        assert state.config_values[details._id]["props"]["value"].root["n"] == 5
        assert state[note._id].label == "done 5"
        # gr.State still keeps its value per session
        assert [client.predict(api_name="/count") for _ in range(3)] == [1, 2, 3]
        assert Client(demo.local_url, verbose=False).predict(api_name="/count") == 1
    finally:
        demo.close()


def test_closed_sessions_are_forgotten_after_their_grace_time():
    """N users come, click once and close their tab: their state goes once Gradio's hour to
    reopen has passed (0 s here); open sessions and closed ones in their hour stay."""
    demo, _, _ = _streaming_app()
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(),
                        prevent_thread_lock=True, quiet=True)
    try:
        users = [Client(demo.local_url, verbose=False) for _ in range(6)]
        for user in users:
            assert user.predict(1, api_name="/stream")[2] == "text 1"
        holder = demo.state_holder
        closed, in_grace, still_open = users[:4], users[4], users[5]
        for user in [*closed, in_grace]:
            state = holder.session_data[user.session_hash]
            state.is_closed = True  # what Gradio's heartbeat route does when the tab goes
            state.STATE_TTL_WHEN_CLOSED = 0 if user in closed else 3600
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(u.session_hash in holder.session_data
                                                  for u in closed):
            time.sleep(0.2)  # Gradio sweeps expired state every second
        assert not any(u.session_hash in holder.session_data for u in closed)
        assert in_grace.session_hash in holder.session_data
        assert still_open.session_hash in holder.session_data
        assert still_open.predict(2, api_name="/stream")[2] == "text 2"
    finally:
        demo.close()


def test_gpt_generations_leave_the_session_state_bounded(one_thread):
    """The app's own route: two users, three generations each."""
    import app

    demo = app.build_app()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                quiet=True)
    try:
        users = [Client(demo.local_url, verbose=False) for _ in range(2)]
        for user in users:
            for seed in range(3):
                text = user.predict(max_new_tokens=6, seed=seed, api_name="/gpt_generate")[0]
                assert text
        for user in users:
            assert _extra_blocks(demo, user) == []
    finally:
        demo.close()
