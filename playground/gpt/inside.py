"""Inside the GPT at one token of a generation (prompt or generated): the attention of every
layer and head from it to the earlier tokens, and the logit lens (no gradio here).

Both read a generation's details (``details.py``), run one forward pass over the tokens up to
the clicked one (causal: later tokens change nothing there) and work for any transformers
causal LM whose parts they can find: the bundled GPT-2, a model trained in the app, a hub model
(SmolLM2 is a Llama). Where a model cannot give a view, the result says why (``available``
False, ``note``) instead of failing.

- Attention: models that run sdpa/flash attention return no weights, so the call switches the
  model to eager attention and back (``eager_attention``; one request at a time per model).
- Logit lens (nostalgebraist, 2020): each layer's residual stream at the token, put through the
  model's final norm and unembedding, read as a next-token distribution. After the last layer
  it is the model's own output; the view checks that and notes any difference.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from playground.core import registry, repro
from playground.core.errors import UserInputError, check_range
from playground.core.sessions import unique_output
from playground.gpt import FAMILY
from playground.gpt.details import read_details
from playground.gpt.inference import LanguageModel, encode_prompt, load_language_model, token_text

MAX_KEYS = 32  # earlier tokens drawn in the attention picture (the last ones before the token)
LENS_TOP = 5
LENS_TOLERANCE = 1e-4  # last-layer lens vs the model's output (probabilities)
NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm", "norm_f", "final_norm")
LAYER_NAMES = ("h", "layers", "layer", "blocks")
_SWITCH = threading.Lock()


class ViewUnavailable(UserInputError):
    """This model cannot give this view (the message says why)."""


@dataclass
class Context:
    """The tokens a generation's model read, and the one clicked."""

    lm: LanguageModel
    ids: list[int]  # prompt (as the model read it) + generated
    texts: list[str]  # each token's text, special tokens shown
    prompt_len: int
    position: int  # 0-based over ``ids``

    @property
    def where(self) -> str:
        part = "prompt" if self.position < self.prompt_len else "generated"
        return f"token {self.position} ({part}) {self.texts[self.position]!r}"


def read_context(details, position) -> Context:
    """The model and tokens of ``details`` (a generation's JSON) and ``position`` checked."""
    source = read_details(details)
    lm = load_language_model(registry.resolve(FAMILY, source.model))
    prompt_ids = source.prompt_ids
    if prompt_ids is None:  # details without them: encode the prompt as generation did
        s = source.settings
        prompt_ids = encode_prompt(lm, s["prompt"], int(s["max_new_tokens"]),
                                   source.use_chat).ids[0].tolist()
    ids = prompt_ids + source.token_ids
    vocab = lm.model.get_input_embeddings().num_embeddings
    if max(ids) >= vocab or len(ids) > lm.context:
        raise UserInputError(f"The details do not fit '{lm.name}' (token ids up to {vocab - 1}, "
                             f"at most {lm.context} tokens): were they made by another model?")
    position = check_range("Position", position, 0, len(ids) - 1, integer=True)
    return Context(lm, ids, [token_text(lm.tokenizer, i) for i in ids], len(prompt_ids),
                   position)


def _record(ctx: Context, view: str, **params) -> dict:
    return repro.make_record(FAMILY, ctx.lm.name, ctx.lm.source,
                             {"view": view, "position": ctx.position, "token_ids": ctx.ids,
                              **params}, None, revision=ctx.lm.revision)


def _input(ctx: Context) -> torch.Tensor:
    """(1, position + 1) ids on the model's device: the tokens up to the clicked one."""
    device = next(ctx.lm.model.parameters()).device
    return torch.tensor([ctx.ids[:ctx.position + 1]], device=device)


# ---- attention -------------------------------------------------------------------------------

@contextlib.contextmanager
def eager_attention(model):
    """Run the block with ``model`` on eager attention (the only kind that returns weights)."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield
        return
    with _SWITCH:
        try:
            model.set_attn_implementation("eager")
        except Exception as exc:  # an architecture without the attention interface
            raise ViewUnavailable(f"{type(model).__name__} cannot switch to eager attention, "
                                  f"which attention weights need ({exc}).") from exc
        try:
            yield
        finally:
            model.set_attn_implementation(before)


@torch.no_grad()
def attention_weights(model, ids: torch.Tensor) -> torch.Tensor:
    """Every layer's and head's attention over ``ids`` (1, T): a (L, H, T, T) float tensor on
    the CPU; row i holds how token i spreads its attention over tokens 0..i."""
    with eager_attention(model):
        out = model(input_ids=ids, output_attentions=True, use_cache=False)
    maps = getattr(out, "attentions", None)
    if not maps or any(m is None for m in maps):
        raise ViewUnavailable(f"{type(model).__name__} returned no attention weights (its "
                              "attention implementation does not give them).")
    return torch.stack([m[0].float().cpu() for m in maps])


@dataclass
class AttentionView:
    """Attention from the clicked token to the tokens up to it: all of them, or past
    ``MAX_KEYS`` the first token (where many heads park their attention) and the last ones."""

    available: bool
    note: str
    position: int
    keys: list[str] = field(default_factory=list)  # texts of the tokens shown
    key_positions: list[int] = field(default_factory=list)  # their positions
    weights: np.ndarray | None = None  # (layers, heads, keys)
    image: str | None = None  # PNG path (the record in its text chunks)
    record: dict = field(default_factory=dict)

    def details(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("weights", "image")}
        if self.weights is not None:
            data["weights"] = np.round(self.weights, 4).tolist()
        return data


def attention_view(details, position) -> AttentionView:
    """The attention picture and weights at ``position`` (0-based over prompt + generated)."""
    from playground.gpt.render import attention_grid

    ctx = read_context(details, position)
    try:
        weights = attention_weights(ctx.lm.model, _input(ctx))[:, :, -1]  # (L, H, position+1)
    except ViewUnavailable as exc:
        return AttentionView(False, str(exc), ctx.position)
    shown_at = shown_positions(ctx.position)
    shown = weights[:, :, shown_at].numpy()
    keys = [ctx.texts[i] for i in shown_at]
    record = _record(ctx, "attention", shown_positions=shown_at)
    picture = attention_grid(shown, keys, shown_at, ctx.where)
    path = repro.save_png(picture, record, unique_output(FAMILY, f"attention-{ctx.position}",
                                                         ".png"))
    layers, heads = shown.shape[:2]
    hidden = ctx.position + 1 - len(shown_at)
    note = f"Attention from {ctx.where}: {layers} layers × {heads} heads"
    if hidden:
        share = 1 - float(weights[:, :, shown_at].sum(-1).mean())
        note += (f"; the {hidden} tokens between the first and the last {len(shown_at) - 1} are "
                 f"not drawn (they hold {share:.0%} of the attention on average)")
    return AttentionView(True, note + ".", ctx.position, keys, shown_at, shown, str(path),
                         record)


def shown_positions(position: int) -> list[int]:
    """The tokens the picture shows for a click at ``position``: every one up to it, or, past
    ``MAX_KEYS``, the first (many heads' resting place) and the last ``MAX_KEYS - 1``."""
    if position < MAX_KEYS:
        return list(range(position + 1))
    return [0, *range(position + 2 - MAX_KEYS, position + 1)]


# ---- logit lens ------------------------------------------------------------------------------

def lens_parts(model) -> tuple[list[torch.nn.Module], torch.nn.Module, torch.nn.Module]:
    """(decoder layers, final norm, unembedding) of a causal LM, found under the usual names
    (GPT-2: transformer.h / ln_f; Llama, SmolLM2: model.layers / norm; OPT: decoder...)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    base = getattr(model, getattr(model, "base_model_prefix", "") or "-", None)
    owners = [m for m in (base, getattr(base, "decoder", None)) if isinstance(m, torch.nn.Module)]
    try:
        n_layers = model.config.get_text_config().num_hidden_layers
    except AttributeError:
        n_layers = None
    layers = next((got for o in owners for n in LAYER_NAMES
                   if isinstance(got := getattr(o, n, None), torch.nn.ModuleList)
                   and len(got) == n_layers), None)
    norm = next((got for o in owners for n in NORM_NAMES
                 if isinstance(got := getattr(o, n, None), torch.nn.Module)), None)
    missing = [name for name, part in (("decoder layers", layers), ("final norm", norm),
                                       ("unembedding", head)) if part is None]
    if missing:
        raise ViewUnavailable(f"The logit lens needs a model's decoder layers, final norm and "
                              f"unembedding; {type(model).__name__} does not show its "
                              f"{' and '.join(missing)} under a name this view knows.")
    return list(layers), norm, head


@torch.no_grad()
def residual_stream(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual stream before the first layer and after each layer, (L + 1, T, D), and
    the model's own logits (T, V), from one forward pass over ``ids`` (1, T)."""
    layers, _, _ = lens_parts(model)
    states: list[torch.Tensor] = []

    def before_first(module, args, kwargs) -> None:
        states.append(args[0] if args else kwargs["hidden_states"])

    def after(module, args, output) -> None:
        states.append(output[0] if isinstance(output, (tuple, list)) else output)

    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after) for layer in layers]
    try:
        logits = model(input_ids=ids, use_cache=False).logits[0]
    finally:
        for handle in handles:
            handle.remove()
    if len(states) != len(layers) + 1:
        raise ViewUnavailable(f"{type(model).__name__} did not run its layers once each.")
    return torch.stack([s[0] for s in states]), logits


@torch.no_grad()
def lens_distributions(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token probabilities at the last token of ``ids``: each layer's through the final
    norm and unembedding, (L + 1, V) (row 0: the embeddings), and the model's own, (V,)."""
    _, norm, head = lens_parts(model)
    states, logits = residual_stream(model, ids)
    lens = head(norm(states[:, -1])).float()  # (L + 1, V)
    return torch.softmax(lens, -1).cpu(), torch.softmax(logits[-1].float(), -1).cpu()


@dataclass
class LensRow:
    layer: str  # "embeddings", "layer 1", ...
    top: list[tuple[str, float]]  # the LENS_TOP most likely next tokens
    p_next: float | None  # probability of the token that came next (None at the last token)


@dataclass
class LogitLens:
    available: bool
    note: str
    position: int
    rows: list[LensRow] = field(default_factory=list)
    next_token: str | None = None
    max_diff: float | None = None  # last layer's lens vs the model's output (probabilities)
    record: dict = field(default_factory=dict)

    def table(self) -> tuple[list[str], list[list]]:
        """Headers and rows for a table: layer, top-5 as "'token' p", p of the next token."""
        headers = ["layer", *[f"#{i + 1}" for i in range(LENS_TOP)],
                   f"p(next = {self.next_token!r})" if self.next_token is not None else "next"]
        rows = [[r.layer, *[f"{t!r} {p:.3f}" for t, p in r.top],
                 None if r.p_next is None else round(r.p_next, 4)] for r in self.rows]
        return headers, rows

    def details(self) -> dict:
        return asdict(self)


def logit_lens(details, position) -> LogitLens:
    """Each layer's top-5 next tokens at ``position`` (0-based over prompt + generated)."""
    ctx = read_context(details, position)
    try:
        lens, own = lens_distributions(ctx.lm.model, _input(ctx))
    except ViewUnavailable as exc:
        return LogitLens(False, str(exc), ctx.position)
    nxt = ctx.ids[ctx.position + 1] if ctx.position + 1 < len(ctx.ids) else None
    top_p, top_ids = torch.topk(lens, min(LENS_TOP, lens.shape[-1]), dim=-1)
    rows = [LensRow("embeddings" if i == 0 else f"layer {i}",
                    [(token_text(ctx.lm.tokenizer, t), p) for t, p in zip(ids, ps, strict=True)],
                    None if nxt is None else float(lens[i, nxt]))
            for i, (ids, ps) in enumerate(zip(top_ids.tolist(), top_p.tolist(), strict=True))]
    diff = float((lens[-1] - own).abs().max())
    note = f"Logit lens at {ctx.where}: what each layer would predict next."
    if diff > LENS_TOLERANCE:
        note += (f" The last layer's lens differs from the model's output by up to {diff:.2g}: "
                 "this architecture changes the logits after the unembedding.")
    record = _record(ctx, "logit_lens", top=LENS_TOP)
    return LogitLens(True, note, ctx.position, rows,
                     None if nxt is None else ctx.texts[ctx.position + 1], diff, record)
