"""Shared core: device, seeds, registry/loader, training loop, reproducibility records.

Nothing here imports gradio (see ``playground.ui`` for the UI helpers) and nothing here
imports diffusers/transformers/accelerate at module level, so importing it stays cheap.
"""
