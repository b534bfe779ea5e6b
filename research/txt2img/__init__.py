"""txt2img research: the experiments behind ``weights/txt2img-shapes`` (see LOG.md)."""
