"""Generative Models Playground: `python app.py [--host H] [--port P] [--share] [--auth U:P]`.

Builds one gr.Blocks with a tab per family (see playground/families.py) and an About tab.
Importing this module loads no model; models load lazily on first use.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
if os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):
    import spaces  # noqa: F401  -- on ZeroGPU it must come before torch touches CUDA

import gradio as gr  # noqa: E402

from playground import families, ui  # noqa: E402
from playground.about import about_markdown, list_models  # noqa: E402
from playground.core import sessions  # noqa: E402

QUEUE_MAX_SIZE = 128  # a class of 30, each with a few requests in flight
CACHE_SWEEP = (900, 3600)  # every 15 min, delete Gradio's cached files older than an hour


def build_app() -> gr.Blocks:
    """The whole app: one tab per available family, then About."""
    modules = {name: families.load(name) for name in families.available()}
    with gr.Blocks(title="Generative Models Playground", delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown("# Generative Models Playground\nReal generative models, one tab per family. "
                    "Same seed and settings ⇒ same output.")
        with gr.Tabs():
            for name, module in modules.items():
                with gr.Tab(module.TITLE, id=name):
                    __import__(f"playground.{name}.tab", fromlist=["build_tab"]).build_tab()
            with gr.Tab("About", id="about"):
                gr.Markdown(about_markdown(modules))
                with gr.Accordion("Models in this app", open=False):
                    models_json = gr.JSON(label="Registered models")
                    gr.Button("List models").click(ui.friendly(list_models), None,
                                                   models_json, api_name="list_models")
        demo.unload(ui.end_session)  # the tab closed: its runs stop, its models and files go
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    sessions.start_sweeper()
    return demo


AUTH_ENV = "PLAYGROUND_AUTH"  # USER:PASS, e.g. a Space secret


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit(f"--auth (or ${AUTH_ENV}) must look like USER:PASS")
    return user, password


def on_space() -> bool:
    """True when running as a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def serve_threads() -> int:
    """Torch threads per request while serving ($PLAYGROUND_TORCH_THREADS, default 1).

    Requests of different families run side by side (one queue slot each); with one thread
    each they share the cores instead of fighting over them: on 2 cores a 20-step txt2img took
    1.8 s single-threaded and 14.7 s with two OpenMP threads while other work ran."""
    import torch

    threads = max(1, int(os.environ.get("PLAYGROUND_TORCH_THREADS", "1")))
    torch.set_num_threads(threads)
    limit_malloc_arenas()
    return threads


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); a server
    with many request threads then holds freed memory in many of them and its RSS creeps up.
    ``mallopt(M_ARENA_MAX)`` before the request threads start keeps it to a few. No-op (False)
    where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None,
                        help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="also create a public gradio link")
    parser.add_argument("--auth", default=None,
                        help=f"USER:PASS required to open the app (default: ${AUTH_ENV})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: auto)")
    args = parser.parse_args(argv)
    if args.device:
        from playground.core.device import set_device_override
        set_device_override(args.device)
    auth = parse_auth(args.auth or os.environ.get(AUTH_ENV))
    share = args.share
    if share and on_space():
        print("--share ignored: a Space is already public at its URL "
              f"(https://huggingface.co/spaces/{os.environ['SPACE_ID']}).")
        share = False
    if share and not auth:
        print(f"Note: --share makes the app public; add --auth USER:PASS (or set ${AUTH_ENV}) "
              "to protect it.")
    serve_threads()
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("playground").setLevel(logging.INFO)  # sessions ending, sweeps
    demo = build_app()
    from playground.core.device import on_zerogpu
    if on_zerogpu():
        print("ZeroGPU: preloaded", ", ".join(families.preload_all()))
    demo.launch(server_name=args.host, server_port=args.port, share=share or None,
                auth=auth, prevent_thread_lock=True,
                max_file_size="50mb", footer_links=["api", "gradio", "settings"])
    if share and not demo.share_url:
        print("Could not create a public share link (no internet connection to the share "
              f"server?). The app is still serving locally at {demo.local_url}")
    demo.block_thread()


if __name__ == "__main__":
    main()
