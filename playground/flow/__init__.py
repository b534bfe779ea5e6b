"""Normalizing-flow family: 2-D flows (RealNVP, Glow-style, neural spline) with exact likelihood."""

from __future__ import annotations

from playground.core import registry

TITLE = "Flows"
ABOUT = """
A normalizing flow turns a simple Gaussian into a complicated distribution through a chain of
invertible layers; because every layer can be undone and its volume change is known, the flow gives
the exact log-likelihood of any point (a GAN cannot). Here 2-D flows built with the zuko library
(François Rozet et al.) learn toy shapes, or points you draw, in seconds, and you can watch each
layer warp the plane. Targets follow the toy data sets of FFJORD (Grathwohl et al., 2018).
A flow can also be fitted to an unnormalised density alone, with no samples, by reverse KL
(as in Rezende & Mohamed, 2015), beside a twin fitted to samples, to see how the two differ.
"""
FAMILY = "flow"
SHIPPED_TARGETS = ("8gaussians", "checkerboard", "rings", "moons", "pinwheel", "spirals")


def shipped_name(target: str) -> str:
    return f"flow-{target}"


def register_models() -> None:
    for target in SHIPPED_TARGETS:
        registry.register_weights(FAMILY, shipped_name(target),
                                  f"neural spline flow fitted here to the {target} target",
                                  target=target)


def preload() -> None:
    """Load the default shipped flow through the normal cached loader (the app calls this at
    start-up on ZeroGPU, so the model is in memory before the first request)."""
    from playground.flow.inference import load_flow

    register_models()  # idempotent; the name must resolve
    load_flow(shipped_name(SHIPPED_TARGETS[0]))
