"""The VAE tab's view of its latent space as a whole (issue 24): every face's code on the two
main directions (PCA), drawn, clickable, and decodable at any point (/vae_map, /vae_map_decode).
``vae/tab.py`` builds it under the tab's other views with the tab's model picker."""

from __future__ import annotations

import gradio as gr

from playground.core.errors import UserInputError
from playground.core.zerogpu import gpu_handler
from playground.ui import friendly, model_event
from playground.vae.slots import BASE_S, PER_IMAGE_S, hub_extra

# model handlers show huggingface_hub's download bars (tqdm) while a hub model is fetched
TRACK_DOWNLOADS = gr.Progress(track_tqdm=True)

MAP_INTRO = """Every face's code (its posterior mean) as a point: the codes' two main directions
(PCA) are the axes, colour is the person, the held-out people are outlined. **Click** a point:
*map point* decodes the code there (the other directions at the average code: only what the
two axes carry), *nearest face* decodes the nearest face's full code (its reconstruction)."""


def map_seconds(model, *code_and_progress) -> float:
    return BASE_S + 10.0 + hub_extra(model)  # the first call encodes up to 400 faces


def map_decode_seconds(model, *point_code_and_progress) -> float:
    return map_seconds(model) + PER_IMAGE_S * 2


@friendly
@gpu_handler(map_seconds)
def on_map(model, progress=TRACK_DOWNLOADS):
    """The map picture, its summary (explained variance), and the model it was drawn for."""
    from playground.vae.inside import map_view

    out = map_view(model)
    return out.image_png, out.summary, model


@friendly
@gpu_handler(map_decode_seconds)
def on_map_decode(model, pc1, pc2, code, progress=TRACK_DOWNLOADS):
    from playground.vae.inside import decode_map_point

    out = decode_map_point(model, pc1, pc2, code)
    return out.image_png, out.summary


@friendly
@gpu_handler(map_decode_seconds)
def on_map_click(drawn_for, code, evt: gr.SelectData, progress=TRACK_DOWNLOADS):
    """A click on the map (``evt.index`` = the picture's pixel) decodes the point there, with
    the model the map was drawn for."""
    from playground.vae.inside import decode_map_point, map_point_at_pixel

    if not drawn_for:
        raise UserInputError("Draw the map first, then click a point of it.")
    pc1, pc2 = map_point_at_pixel(drawn_for, getattr(evt, "index", None))
    out = decode_map_point(drawn_for, pc1, pc2, code)
    return pc1, pc2, out.image_png, out.summary


def build_map_section(model) -> None:
    """The "Map of every face's code" section under the VAE tab's other views."""
    from playground.vae.inside import MAP_CODES
    from playground.vae.render_map import MAP_SIZE

    with gr.Accordion("Map of every face's code (PCA)", open=False):
        gr.Markdown(MAP_INTRO)
        with gr.Row():
            draw = gr.Button("Draw the map", elem_id="vae-map-draw")
            code = gr.Radio(list(MAP_CODES), value=MAP_CODES[0], label="Decode at a point")
        with gr.Row():
            picture = gr.Image(label="Posterior means on PC1 × PC2 (click a point)",
                               type="filepath", interactive=False, height=MAP_SIZE,
                               show_label=False, elem_id="vae-map")  # titled in the picture
            with gr.Column():
                decoded = gr.Image(label="Decoded | nearest face's reconstruction | its photo",
                                   type="filepath", elem_id="vae-map-decoded", height=200)
                with gr.Row():
                    pc1 = gr.Number(value=0.0, label="PC1")
                    pc2 = gr.Number(value=0.0, label="PC2")
                go = gr.Button("Decode this point", elem_id="vae-map-go")
                point_info = gr.Markdown(elem_id="vae-map-point-info")
        map_info = gr.Markdown(elem_id="vae-map-info")
        drawn_for = gr.State(None)  # the model the shown map belongs to
    draw.click(on_map, model, [picture, map_info, drawn_for], **model_event("vae_map"))
    go.click(on_map_decode, [model, pc1, pc2, code], [decoded, point_info],
             **model_event("vae_map_decode"))
    picture.select(on_map_click, [drawn_for, code], [pc1, pc2, decoded, point_info],
                   **model_event(None, "vae"))
