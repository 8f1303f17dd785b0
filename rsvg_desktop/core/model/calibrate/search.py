"""Calibrated NF4 for LLaMA decoder layers: statistics, entropy blocks, block-wise search, folding.

Works on any stack of LLaMA-architecture decoder layers (``input_layernorm``, ``self_attn.{q,k,v,o}_proj``,
``post_attention_layernorm``, ``mlp.{gate,up,down}_proj``): GeoChat's language model, or the small
LLaMA the benchmark trains. The caller supplies, per calibration sample, the hidden states entering the
first layer and the keyword arguments the layers take (position embeddings, mask): see
:func:`capture_layer_inputs`.

What it does, layer stack by layer stack, streaming (only one sample set of hidden states is alive):

1. **Entropy pass**: the full-precision stack is run once; for each layer, the Shannon entropy (bits)
   of a 256-bin histogram of its input hidden states, averaged over the samples.
2. **Blocks** (:func:`group_blocks`): as Q-VLM does, a layer whose entropy is at or above
   ``entropy_factor`` × the running mean of the entropies so far joins its high-entropy predecessor's
   block (up to ``max_block_depth`` layers); a low-entropy layer cuts: it is a block of its own.
3. **Search per block**, against the block's full-precision output on the calibration inputs, with
   Q-VLM's loss: the mean of ``|y_q - y_fp| ** p``, ``p = 0.5``; ``y_q`` is the block run with every
   linear fake-quantized to NF4 (:func:`~rsvg_desktop.core.model.calibrate.nf4.fake_nf4`).

   * *Scales* (AWQ's transformation): for the attention input (q/k/v after ``input_layernorm``) and the
     MLP input (gate/up after ``post_attention_layernorm``) of each layer, per-input-channel scales
     ``s = mean|x| ** alpha`` (normalised), multiplied into the linears' input columns and divided out
     of the RMSNorm weight: exactly the same function in full precision, but the salient input channels
     get finer NF4 steps. ``alpha`` is chosen per group from ``alphas`` (0 = no scaling) greedily,
     layer after layer, by the *block* loss, so a choice sees its effect on the later layers of the
     block.
   * *Clipping*: per output channel, a ratio ``r`` in ``clip_ratios`` (1.0 down to 0.4: shrinking the
     range by 0-60 %, Q-VLM's range for the language model); the weights of the channel are clipped to
     ``±r·max|w|`` before NF4. The error of one output channel depends only on its own row, so the ratio
     is chosen exactly per channel by that channel's output error on a sample of calibration tokens
     (``clip_tokens``); the block loss then decides whether the block keeps its clipping.
   A block whose final loss is not below plain NF4's is left unchanged (the search can only help on the
   calibration set).
4. **Apply**: the chosen full-precision weights (scaled, clipped) and folded norms stay in the model;
   the caller quantizes it to ordinary bitsandbytes NF4.

The next block's inputs are the full-precision outputs of this one (as AWQ does): errors do not
compound through the calibration.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from rsvg_desktop.core.model.calibrate.nf4 import fake_nf4
from rsvg_desktop.errors import CalibrationError, CancelledError

__all__ = [
    "BlockResult",
    "CalibrationSettings",
    "LayerInput",
    "StackResult",
    "activation_entropy",
    "block_loss",
    "calibrate_layers",
    "capture_layer_inputs",
    "decoder_layers",
    "group_blocks",
]

log = logging.getLogger(__name__)

#: ``progress(stage, fraction)``
Progress = Callable[[str, float], None]

_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("attn", "input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("mlp", "post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
)
_LINEARS: tuple[str, ...] = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass(frozen=True, slots=True)
class CalibrationSettings:
    """The search's knobs (recorded with every calibration)."""

    entropy_factor: float = 1.0
    max_block_depth: int = 4
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    clip_ratios: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4)
    clip_tokens: int = 512
    use_scales: bool = True
    use_clip: bool = True
    p: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_block_depth < 1:
            raise CalibrationError(f"max_block_depth must be >= 1, got {self.max_block_depth}")
        if not self.alphas or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise CalibrationError(f"alphas must lie in [0, 1], got {self.alphas}")
        if not self.clip_ratios or any(not 0.4 <= r <= 1.0 for r in self.clip_ratios):
            raise CalibrationError(f"clip ratios must lie in [0.4, 1], got {self.clip_ratios}")
        if self.p <= 0:
            raise CalibrationError(f"the loss exponent p must be > 0, got {self.p}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LayerInput:
    """One calibration sample at the entry of a layer: hidden states (1, T, H) and the layer kwargs."""

    hidden: torch.Tensor
    kwargs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What the search chose for one block, and the block's calibration loss before and after."""

    layers: tuple[int, ...]
    entropies: tuple[float, ...]
    alphas: Mapping[str, float]
    clip: Mapping[str, float]
    clip_kept: bool
    loss_nf4: float
    loss: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "entropies": [round(e, 4) for e in self.entropies],
            "alphas": dict(self.alphas),
            "clip_mean_ratio": {k: round(v, 4) for k, v in self.clip.items()},
            "clip_kept": self.clip_kept,
            "loss_nf4": self.loss_nf4,
            "loss": self.loss,
        }


@dataclass(frozen=True, slots=True)
class StackResult:
    """The calibration of a whole decoder stack."""

    settings: CalibrationSettings
    entropies: tuple[float, ...]
    blocks: tuple[BlockResult, ...]
    seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "entropies": [round(e, 4) for e in self.entropies],
            "blocks": [b.to_dict() for b in self.blocks],
            "seconds": round(self.seconds, 3),
        }


# --- model access -------------------------------------------------------------------------------
def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The LLaMA decoder layers of ``model`` (the first ``layers`` list whose modules look like them)."""
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, nn.ModuleList) and len(module) > 0:
            first = module[0]
            if all(_has(first, path) for path in (*_LINEARS, "input_layernorm", "post_attention_layernorm")):
                return module
    raise CalibrationError("the model has no LLaMA decoder layers to calibrate")


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, batches: Sequence[Mapping[str, Any]], layers: nn.ModuleList | None = None
) -> list[LayerInput]:
    """Run ``model(**batch)`` for each batch up to the first decoder layer and keep what enters it."""
    layers = layers if layers is not None else decoder_layers(model)
    found: list[LayerInput] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        kw["use_cache"] = False
        for key in ("past_key_values", "past_key_value", "cache"):
            kw.pop(key, None)
        found.append(LayerInput(hidden.detach(), kw))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(**batch, use_cache=False)
            except _Captured:
                continue
            raise CalibrationError("the first decoder layer was never reached")
    finally:
        handle.remove()
    return found


def _run(layer: nn.Module, item: LayerInput, hidden: torch.Tensor | None = None) -> torch.Tensor:
    out = layer(item.hidden if hidden is None else hidden, **item.kwargs)
    return out[0] if isinstance(out, tuple) else out


# --- statistics ---------------------------------------------------------------------------------
def activation_entropy(x: torch.Tensor, bins: int = 256) -> float:
    """Shannon entropy (bits) of a ``bins``-bin histogram of ``x`` over its own range."""
    flat = x.detach().float().reshape(-1).cpu()
    lo, hi = float(flat.min()), float(flat.max())
    if not hi > lo:
        return 0.0
    counts = torch.histc(flat, bins=bins, min=lo, max=hi)
    prob = counts[counts > 0] / counts.sum()
    return float(-(prob * prob.log2()).sum())


def group_blocks(entropies: Sequence[float], factor: float = 1.0, max_depth: int = 4) -> list[list[int]]:
    """Consecutive high-entropy layers (``>= factor`` × running mean) form a block; low ones cut."""
    blocks: list[list[int]] = []
    current: list[int] = []
    prev_high = False
    total = 0.0
    for i, ent in enumerate(entropies):
        total += ent
        high = ent >= factor * (total / (i + 1))
        if high and prev_high and current and len(current) < max_depth:
            current.append(i)
        else:
            if current:
                blocks.append(current)
            current = [i]
        prev_high = high
    if current:
        blocks.append(current)
    return blocks


class _Stats:
    """Per linear-input group of a layer: mean |x| per channel and a seeded sample of tokens."""

    def __init__(self, tokens: int, generator: torch.Generator) -> None:
        self.abs_sum: torch.Tensor | None = None
        self.count = 0
        self.samples: list[torch.Tensor] = []
        self.tokens = tokens
        self.generator = generator

    def add(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).float()
        s = flat.abs().sum(0)
        self.abs_sum = s if self.abs_sum is None else self.abs_sum + s
        self.count += flat.shape[0]
        self.samples.append(flat.cpu())

    def mean_abs(self) -> torch.Tensor:
        assert self.abs_sum is not None
        return self.abs_sum / max(self.count, 1)

    def token_sample(self) -> torch.Tensor:
        allx = torch.cat(self.samples)
        if allx.shape[0] > self.tokens:
            idx = torch.randperm(allx.shape[0], generator=self.generator)[: self.tokens]
            allx = allx[idx]
        return allx


# --- the search -----------------------------------------------------------------------------------
def _loss(y: torch.Tensor, ref: torch.Tensor, p: float) -> float:
    return float((y.float() - ref.float()).abs().pow(p).mean())


@torch.no_grad()
def block_loss(
    layers: Sequence[nn.Module], inputs: Sequence[LayerInput], refs: Sequence[torch.Tensor], p: float
) -> float:
    """Mean over samples of mean ``|block(x) - ref| ** p``."""
    total = 0.0
    for item, ref in zip(inputs, refs, strict=True):
        h = item.hidden
        for layer in layers:
            h = _run(layer, item, h)
        total += _loss(h, ref, p)
    return total / max(len(inputs), 1)


def _clip_rows(weight: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    limit = weight.abs().amax(dim=1, keepdim=True) * ratio.view(-1, 1)
    return torch.maximum(torch.minimum(weight, limit), -limit)


def _best_clip(weight: torch.Tensor, x: torch.Tensor, ratios: Sequence[float]) -> torch.Tensor:
    """Per output row, the ratio that minimises ``||x (w - nf4(clip(w, r)))||²`` (``x``: tokens × in)."""
    x = x.to(weight.device, torch.float32)
    w = weight.float()
    best_err = torch.full((w.shape[0],), math.inf, device=w.device)
    best = torch.ones(w.shape[0], device=w.device)
    for r in ratios:
        ratio = torch.full((w.shape[0],), float(r), device=w.device)
        diff = w - fake_nf4(_clip_rows(w, ratio))
        err = (x @ diff.t()).pow(2).sum(0)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, ratio, best)
    return best


@torch.no_grad()
def calibrate_layers(
    layers: nn.ModuleList,
    inputs: Sequence[LayerInput],
    settings: CalibrationSettings | None = None,
    *,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> StackResult:
    """Search and apply the calibration to ``layers`` in place (see the module doc)."""
    settings = settings or CalibrationSettings()
    if not inputs:
        raise CalibrationError("no calibration inputs")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(settings.seed)

    def check() -> None:
        if cancel is not None and cancel():
            raise CancelledError("calibration cancelled")

    def report(stage: str, fraction: float) -> None:
        log.info("calibrate: %s", stage)
        if progress is not None:
            progress(stage, fraction)

    n = len(layers)
    # 1. entropy pass
    hiddens = [item.hidden for item in inputs]
    entropies: list[float] = []
    for i, layer in enumerate(layers):
        check()
        entropies.append(sum(activation_entropy(h) for h in hiddens) / len(hiddens))
        hiddens = [_run(layer, item, h) for item, h in zip(inputs, hiddens, strict=True)]
        report(f"entropy of layer {i + 1}/{n}", 0.2 * (i + 1) / n)
    del hiddens
    blocks = group_blocks(entropies, settings.entropy_factor, settings.max_block_depth)
    log.info("calibration blocks: %s", blocks)

    # 2. search block by block
    current = list(inputs)
    results: list[BlockResult] = []
    done = 0
    for block in blocks:
        check()
        block_layers = [layers[i] for i in block]
        result, current = _search_block(block, block_layers, current, entropies, settings, gen, check)
        results.append(result)
        done += len(block)
        report(
            f"block {block[0] + 1}-{block[-1] + 1}/{n}: loss {result.loss_nf4:.4g} -> {result.loss:.4g}",
            0.2 + 0.8 * done / n,
        )
    return StackResult(settings, tuple(entropies), tuple(results), time.perf_counter() - t0)


def _search_block(
    block: list[int],
    block_layers: list[nn.Module],
    inputs: list[LayerInput],
    entropies: list[float],
    settings: CalibrationSettings,
    gen: torch.Generator,
    check: Callable[[], None],
) -> tuple[BlockResult, list[LayerInput]]:
    """Search one block's scales and clipping, leave the chosen full-precision weights in it, and return
    what was chosen with the next block's inputs (this block's full-precision outputs)."""
    reference = _full_precision_pass(block, block_layers, inputs, settings, gen)
    next_inputs = [LayerInput(ref, item.kwargs) for item, ref in zip(inputs, reference.outputs, strict=True)]
    search = _BlockSearch(block, block_layers, inputs, reference, settings)
    search.install()
    loss_nf4 = search.loss()
    best_loss = loss_nf4
    alphas: dict[str, float] = {}
    if settings.use_scales:
        best_loss, alphas = search.search_scales(best_loss, check)
    clip_means: dict[str, float] = {}
    clip_kept = False
    if settings.use_clip:
        best_loss, clip_kept, clip_means = search.search_clip(best_loss, check)
    if best_loss >= loss_nf4:  # nothing helped: leave the block as plain NF4 would see it
        search.reset()
        alphas = dict.fromkeys(alphas, 0.0)
        clip_kept = False
        best_loss = loss_nf4
    search.apply()
    result = BlockResult(
        layers=tuple(block),
        entropies=tuple(entropies[i] for i in block),
        alphas=alphas,
        clip=clip_means if clip_kept else {},
        clip_kept=clip_kept,
        loss_nf4=loss_nf4,
        loss=best_loss,
    )
    return result, next_inputs


@dataclass(frozen=True, slots=True)
class _BlockReference:
    """A block in full precision: its linears' and norms' weights, the statistics of its linears' inputs,
    and its outputs on the calibration inputs (what the search's loss compares with)."""

    weights: dict[str, torch.Tensor]
    norms: dict[str, torch.Tensor]
    stats: dict[str, _Stats]
    outputs: list[torch.Tensor]


def _full_precision_pass(
    block: list[int],
    block_layers: list[nn.Module],
    inputs: list[LayerInput],
    settings: CalibrationSettings,
    gen: torch.Generator,
) -> _BlockReference:
    """Copy the block's full-precision weights and run it once on ``inputs``, collecting statistics."""
    fp: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    stats: dict[str, _Stats] = {}
    handles = []
    for li, layer in zip(block, block_layers, strict=True):
        for lin in _LINEARS:
            fp[f"{li}.{lin}"] = _weight(layer.get_submodule(lin))
        for _, norm, _ in _GROUPS:
            norms[f"{li}.{norm}"] = _weight(layer.get_submodule(norm))
        for lin in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            st = _Stats(settings.clip_tokens, gen)
            stats[f"{li}.{lin}"] = st
            handles.append(layer.get_submodule(lin).register_forward_pre_hook(_stat_hook(st)))
    refs: list[torch.Tensor] = []
    try:
        for item in inputs:
            h = item.hidden
            for layer in block_layers:
                h = _run(layer, item, h)
            refs.append(h)
    finally:
        for handle in handles:
            handle.remove()
    return _BlockReference(fp, norms, stats, refs)


class _BlockSearch:
    """The candidate full-precision weights of one block during its search, and how to try them: a
    candidate is installed fake-quantized to NF4 and scored by the block loss against the reference."""

    def __init__(
        self,
        block: list[int],
        block_layers: list[nn.Module],
        inputs: list[LayerInput],
        reference: _BlockReference,
        settings: CalibrationSettings,
    ) -> None:
        self.block = block
        self.layers = block_layers
        self.inputs = inputs
        self.reference = reference
        self.settings = settings
        self.by_name: dict[str, Any] = {
            f"{li}.{lin}": layer.get_submodule(lin)
            for li, layer in zip(block, block_layers, strict=True)
            for lin in _LINEARS
        }
        self.norm_mods: dict[str, Any] = {
            f"{li}.{norm}": layer.get_submodule(norm)
            for li, layer in zip(block, block_layers, strict=True)
            for _, norm, _ in _GROUPS
        }
        self.weights: dict[str, torch.Tensor] = {}  # current full-precision candidate weights
        self.norm_w: dict[str, torch.Tensor] = {}
        self.reset()
        self.scales: dict[str, torch.Tensor] = {}  # input-scale of each scaled linear

    def reset(self) -> None:
        """Back to the full-precision weights the block started with."""
        self.weights = {k: v.clone() for k, v in self.reference.weights.items()}
        self.norm_w = {k: v.clone() for k, v in self.reference.norms.items()}

    def install(self, names: Sequence[str] | None = None) -> None:
        """Put the candidate weights of ``names`` (default: all) into the model as NF4, and the norms."""
        for key in names if names is not None else list(self.by_name):
            self.by_name[key].weight.copy_(fake_nf4(self.weights[key]).to(self.by_name[key].weight.dtype))
        for key, mod in self.norm_mods.items():
            mod.weight.copy_(self.norm_w[key].to(mod.weight.dtype))

    def loss(self) -> float:
        return block_loss(self.layers, self.inputs, self.reference.outputs, self.settings.p)

    def apply(self) -> None:
        """Leave the chosen full-precision weights (not fake-quantized) in the model."""
        for key, mod in self.by_name.items():
            mod.weight.copy_(self.weights[key].to(mod.weight.dtype))
        for key, mod in self.norm_mods.items():
            mod.weight.copy_(self.norm_w[key].to(mod.weight.dtype))

    def search_scales(self, best_loss: float, check: Callable[[], None]) -> tuple[float, dict[str, float]]:
        """Choose each layer's attention and MLP input scales greedily; the new best loss and the alphas."""
        alphas: dict[str, float] = {}
        for li in self.block:
            for group, norm, lins in _GROUPS:
                check()
                chosen, best_loss = self._best_alpha(li, norm, lins, best_loss)
                alphas[f"{li}.{group}"] = chosen
                if chosen == 0.0:
                    for lin in lins:
                        self.scales.pop(f"{li}.{lin}", None)
        return best_loss, alphas

    def _best_alpha(self, li: int, norm: str, lins: tuple[str, ...], best_loss: float) -> tuple[float, float]:
        """Try every alpha for one input group of layer ``li``; keep the best if it lowers the loss.

        Returns the alpha kept (0.0: none) and the best loss.
        """
        fp, norms = self.reference.weights, self.reference.norms
        mean_abs = self.reference.stats[f"{li}.{lins[0]}"].mean_abs().clamp(min=1e-5)
        chosen = 0.0
        for alpha in self.settings.alphas:
            if alpha == 0.0:
                continue
            s = mean_abs.pow(alpha)
            s = (s / (s.max() * s.min()).sqrt()).to(fp[f"{li}.{lins[0]}"].device)
            saved = {f"{li}.{x}": self.weights[f"{li}.{x}"] for x in lins}
            saved_norm = self.norm_w[f"{li}.{norm}"]
            for lin in lins:
                self.weights[f"{li}.{lin}"] = fp[f"{li}.{lin}"].float() * s.view(1, -1)
            self.norm_w[f"{li}.{norm}"] = norms[f"{li}.{norm}"].float() / s
            self.install([f"{li}.{x}" for x in lins])
            cand = self.loss()
            if cand < best_loss:
                best_loss, chosen = cand, alpha
                for lin in lins:
                    self.scales[f"{li}.{lin}"] = s
            else:
                self.weights.update(saved)
                self.norm_w[f"{li}.{norm}"] = saved_norm
                self.install([f"{li}.{x}" for x in lins])
        return chosen, best_loss

    def search_clip(
        self, best_loss: float, check: Callable[[], None]
    ) -> tuple[float, bool, dict[str, float]]:
        """Clip every linear's rows by their best ratio; kept only if the block loss falls.

        Returns the best loss, whether the clipping was kept, and each linear's mean ratio.
        """
        clip_means: dict[str, float] = {}
        unclipped = dict(self.weights)
        for key in self.by_name:
            check()
            layer_no, lin = key.split(".", 1)
            stat_name = {
                "self_attn.k_proj": "self_attn.q_proj",
                "self_attn.v_proj": "self_attn.q_proj",
                "mlp.up_proj": "mlp.gate_proj",
            }.get(lin, lin)
            x = self.reference.stats[f"{layer_no}.{stat_name}"].token_sample()
            if key in self.scales:
                x = x / self.scales[key].cpu().view(1, -1)
            ratio = _best_clip(self.weights[key], x, self.settings.clip_ratios)
            self.weights[key] = _clip_rows(self.weights[key].float(), ratio)
            clip_means[key] = float(ratio.mean())
        self.install()
        cand = self.loss()
        if cand < best_loss:
            return cand, True, clip_means
        self.weights = unclipped
        self.install()
        return best_loss, False, clip_means


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach().clone()


def _stat_hook(st: _Stats) -> Callable[[nn.Module, tuple[Any, ...]], None]:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
        st.add(args[0])

    return hook
