"""The text-to-image tab's views of what happens inside the model (issue 24): which word of the
prompt drives which pixels (``attention.py``) and the X/Y grid of settings (``grid.py``). Only
their gradio wiring lives here, in ``tab.py`` (the one file name allowed to import gradio); the
model code stays beside the family's other modules."""
