"""Batched GeoChat generation: many tiles, same or different prompts, one forward pass per batch.

:class:`GeoChatGenerator` is built once from a :class:`~rsvg_desktop.core.model.loader.LoadedModel`
(processor, tokenizer, conversation template, generation settings, vision dtype are all fixed then)
and answers :class:`GenerationRequest` values:

* prompts come from :func:`rsvg_desktop.core.prompt.build_prompt` (``llava_v1`` template) and are
  built for every request before the first batch runs, so a bad request fails before any model work;
* a batch is tokenized with **left** padding (the open assistant turn of every row ends at the last
  column, where decoding continues; transformers derives position ids from the attention mask);
* decoding is greedy (``do_sample=False``, ``num_beams=1``) and stops at ``</s>`` (EOS) or after
  ``max_new_tokens``; everything runs under ``torch.inference_mode()``;
* non-square images are padded to a square with the CLIP mean colour (GeoChat's ``pad`` aspect
  mode) before the processor resizes them to the model's input size.

Batch size: ``batch_size=None`` uses :func:`auto_batch_size`: on the CPU :data:`CPU_BATCH_SIZE`; on
CUDA ``(free − reserve) // per_tile`` where ``free`` comes from ``torch.cuda.mem_get_info``, the
reserve is ``max(1 GiB, 5 % of the card)`` (allocator fragmentation, bitsandbytes' per-layer
dequantization buffers, the vision tower's own peak) and ``per_tile`` is
:func:`rsvg_desktop.core.model.memory.tile_bytes` (KV cache of 1296 image tokens + prompt +
``max_new_tokens`` + prefill activations), clamped to ``[1, MAX_AUTO_BATCH]``.

Compiled path (``compiled=True``, CUDA only, off by default): a static KV cache
(``cache_implementation="static"``) lets transformers ``torch.compile`` the decoding step (its
``CompileConfig``: mode ``reduce-overhead``, static shapes). So that it compiles for a few shapes rather
than for every batch, each batch is padded to fixed shapes: its rows up to the next of
:data:`COMPILED_BATCH_BUCKETS` (the extra rows repeat the last tile and are dropped) and its prompt
length (left padding) up to a multiple of :data:`COMPILED_SEQ_MULTIPLE` tokens. The first batch of each
shape pays the compilation: its time is logged and kept in :attr:`GeoChatGenerator.first_shape_seconds`.
Asking for it on the CPU is a :class:`~rsvg_desktop.errors.ConfigError`. Unmeasured on a GPU so far
(see benchmarks/README.md), hence off by default.

Out of memory on CUDA: the batch is split in two halves that are run one after the other (recursively);
the smaller size is kept as the cap for later batches, and each result records the batch size it
really ran with. Out of memory with a single tile, or any other failure of the model, raises
:class:`~rsvg_desktop.errors.GenerationError`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from rsvg_desktop.core.constants import CLIP_MEAN_RGB
from rsvg_desktop.core.model.loader import LoadedModel
from rsvg_desktop.core.model.memory import GIB, tile_bytes
from rsvg_desktop.core.prompt import LLAVA_V1, build_prompt, parse_answer
from rsvg_desktop.core.types import GridBox, ParseResult
from rsvg_desktop.errors import (
    CancelledError,
    ConfigError,
    DeviceFailure,
    DeviceOutOfMemoryError,
    GenerationError,
)

__all__ = [
    "CLIP_MEAN_RGB",
    "COMPILED_BATCH_BUCKETS",
    "COMPILED_SEQ_MULTIPLE",
    "CPU_BATCH_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
    "MAX_AUTO_BATCH",
    "GenerationRequest",
    "GenerationResult",
    "GeoChatGenerator",
    "auto_batch_size",
    "bucket_size",
    "check_image",
    "expand_to_square",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256
CPU_BATCH_SIZE = 4
MAX_AUTO_BATCH = 64
#: Prompt tokens assumed per tile when sizing batches (system + task wording + a short query).
PROMPT_TOKENS_GUESS = 128
#: Batch sizes the compiled path pads a batch up to (beyond the last: multiples of it).
COMPILED_BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
#: The compiled path pads every batch's prompt length up to a multiple of this many tokens.
COMPILED_SEQ_MULTIPLE = 64


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One tile and its question.

    ``image``: ``numpy.uint8`` array ``H×W×3`` (RGB) or a PIL image (compared by identity).
    ``task``: a task name of :mod:`rsvg_desktop.core.prompt` (``grounding``, ``refer``, ``identify``,
    ``classify``, ``vqa``, ``chat``). ``history``: earlier ``(user_text, answer)`` turns.
    ``region``: the box for ``identify``; ``classes``: the class list for ``classify``.
    """

    image: Any = field(compare=False)
    task: str = "grounding"
    query: str = ""
    history: tuple[tuple[str, str], ...] = ()
    region: GridBox | None = None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The answer to one request.

    ``index``: the request's position in the sequence passed in. ``answer``: decoded text (special
    tokens removed, stripped). ``parsed``: :func:`parse_answer` of it. ``input_tokens``: prompt tokens
    incl. the image tokens (padding excluded). ``output_tokens``: generated tokens incl. the final
    ``</s>``. ``finish_reason``: ``"stop"`` (``</s>``) or ``"length"`` (``max_new_tokens`` reached: the
    answer may be cut off). ``seconds``: the batch's wall time divided by its size. ``batch_size``:
    the size of the batch this request really ran in. ``prompt``: the text sent (image token once).
    ``token_ids``: the generated token ids (up to and including ``</s>``).
    """

    index: int
    answer: str
    parsed: ParseResult
    input_tokens: int
    output_tokens: int
    finish_reason: str
    seconds: float
    batch_size: int
    prompt: str
    token_ids: tuple[int, ...] = ()


def bucket_size(n: int, buckets: Sequence[int] = COMPILED_BATCH_BUCKETS) -> int:
    """The smallest of ``buckets`` (ascending) that holds ``n`` rows; above the largest, the next
    multiple of the largest. ConfigError for ``n`` < 1 or no buckets."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"a batch needs at least one row, got {n!r}")
    if not buckets:
        raise ConfigError("no batch buckets given")
    for size in sorted(buckets):
        if n <= size:
            return int(size)
    top = int(max(buckets))
    return -(-n // top) * top


def check_image(image: Any) -> None:
    """ConfigError unless ``image`` is a ``uint8`` HxWx3 numpy array or a PIL image."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ConfigError(
                f"tile image must be a uint8 array of shape HxWx3, got {image.dtype} {image.shape}"
            )
    elif not isinstance(image, Image.Image):
        raise ConfigError(f"tile image must be a numpy array or a PIL image, not {type(image).__name__}")


def expand_to_square(image: Any, fill: tuple[int, int, int] = CLIP_MEAN_RGB) -> Any:
    """A PIL RGB image of ``image`` (numpy HxWx3 uint8 or PIL), centred on a square of ``fill``."""
    from PIL import Image

    check_image(image)
    if isinstance(image, np.ndarray):
        pil = Image.fromarray(np.ascontiguousarray(image))
    else:
        pil = image if image.mode == "RGB" else image.convert("RGB")
    w, h = pil.size
    if w == h:
        return pil
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(pil, ((side - w) // 2, (side - h) // 2))
    return canvas


def auto_batch_size(
    loaded: LoadedModel,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    *,
    prompt_tokens: int = PROMPT_TOKENS_GUESS,
) -> int:
    """A batch size that fits: :data:`CPU_BATCH_SIZE` on the CPU, from free memory on CUDA.

    See the module doc for the CUDA formula.
    """
    if not loaded.device.startswith("cuda"):
        return CPU_BATCH_SIZE
    free, total = torch.cuda.mem_get_info(torch.device(loaded.device))
    reserve = max(GIB, int(0.05 * total))
    per_tile = tile_bytes(
        loaded.model.config, prompt_tokens=prompt_tokens, max_new_tokens=max_new_tokens, dtype=loaded.dtype
    )
    n = int((free - reserve) // per_tile)
    size = max(1, min(MAX_AUTO_BATCH, n))
    log.info(
        "auto batch size %d (free %.1f GiB, reserve %.1f GiB, %.0f MiB per tile)",
        size,
        free / GIB,
        reserve / GIB,
        per_tile / 2**20,
    )
    return size


class _CancelCriteria(StoppingCriteria):
    """A transformers stopping criterion that ends generation when the generator's ``should_stop``
    says so (checked once per generated token, so a cancel takes effect within one decoding step)."""

    def __init__(self, owner: GeoChatGenerator) -> None:
        super().__init__()
        self.owner = owner
        self.fired = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        stop = bool(self.owner.should_stop and self.owner.should_stop())
        self.fired = self.fired or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class GeoChatGenerator:
    """Answers GeoChat requests in batches with one loaded model (build once, call many times)."""

    def __init__(self, loaded: LoadedModel, *, template: Any = LLAVA_V1, compiled: bool = False) -> None:
        from transformers import GenerationConfig

        if compiled and not str(loaded.device).startswith("cuda"):
            raise ConfigError(
                f"the compiled generation path needs a CUDA GPU, not {loaded.device_name}: "
                "run without --compiled"
            )
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.template = template
        self.image_token: str = getattr(self.processor, "image_token", "<image>")
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise GenerationError("the tokenizer has no end-of-sequence token")
        self.eos_token_id: int = int(eos)
        pad = self.tokenizer.pad_token_id
        self.pad_token_id: int = int(pad) if pad is not None else self.eos_token_id
        self.device = torch.device(loaded.device)
        vision = self.model.model.vision_tower
        self.vision_dtype: torch.dtype = next(vision.parameters()).dtype
        image_size = self.model.config.vision_config.image_size
        self.image_size: int = int(image_size)
        self.generation_config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            use_cache=True,
        )
        #: The compiled path: static KV cache + torch.compile of the decoding step (CUDA only).
        self.compiled = bool(compiled)
        #: Pad batches to fixed shapes (rows to COMPILED_BATCH_BUCKETS, prompt length to a multiple of
        #: COMPILED_SEQ_MULTIPLE); on with ``compiled``, which would recompile for every new shape.
        self.pad_shapes = self.compiled
        #: Seconds of the first batch of each padded (rows, tokens) shape (compilation included).
        self.first_shape_seconds: dict[tuple[int, int], float] = {}
        if self.compiled:
            from transformers import CompileConfig

            self.generation_config.cache_implementation = "static"
            self.generation_config.compile_config = CompileConfig(fullgraph=True, mode="reduce-overhead")
        self._configs: dict[tuple[int, int], Any] = {}
        self._batch_cap: int | None = None  # lowered after an out-of-memory split
        #: Polled between generated tokens; when it returns true the batch in flight is abandoned and
        #: :class:`~rsvg_desktop.errors.CancelledError` raised (finished batches are unaffected).
        self.should_stop: Callable[[], bool] | None = None
        self._stopping = _CancelCriteria(self)

    def _generation_config(self, max_new_tokens: int, min_new_tokens: int) -> Any:
        """The generation settings for these lengths (built once per pair, then reused)."""
        key = (max_new_tokens, min_new_tokens)
        config = self._configs.get(key)
        if config is None:
            config = copy.deepcopy(self.generation_config)
            config.max_new_tokens = max_new_tokens
            config.min_new_tokens = min_new_tokens or None
            self._configs[key] = config
        return config

    # --- prompts ------------------------------------------------------------------------------
    def build_prompt(self, request: GenerationRequest) -> str:
        """The prompt text of ``request`` (ConfigError for an invalid task/query/region/classes)."""
        return build_prompt(
            request.task,
            request.query,
            request.history,
            classes=request.classes,
            region=request.region,
            image_token=self.image_token,
            template=self.template,
        )

    # --- generation ---------------------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int | None = None,
        min_new_tokens: int = 0,
    ) -> list[GenerationResult]:
        """Answer every request; results in request order (see :meth:`iter_generate`)."""
        out: list[GenerationResult] = []
        for batch in self.iter_generate(
            requests, max_new_tokens=max_new_tokens, batch_size=batch_size, min_new_tokens=min_new_tokens
        ):
            out.extend(batch)
        return out

    def iter_generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int | None = None,
        min_new_tokens: int = 0,
    ) -> Iterator[list[GenerationResult]]:
        """Yield the results of each batch as it finishes (a cancellation point between batches).

        ``batch_size=None`` → :func:`auto_batch_size`. ``min_new_tokens`` > 0 suppresses ``</s>``
        until that many tokens exist (for benchmarks that need fixed-length answers). Arguments,
        prompts and images are checked here, when called (ConfigError), before any batch runs.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be a positive integer, got {max_new_tokens!r}")
        if min_new_tokens < 0 or min_new_tokens > max_new_tokens:
            raise ConfigError(f"min_new_tokens must be in [0, max_new_tokens], got {min_new_tokens!r}")
        if batch_size is None:
            batch_size = auto_batch_size(self.loaded, max_new_tokens)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"--batch-size must be a positive integer, got {batch_size!r}")
        requests = list(requests)
        prompts = [self.build_prompt(r) for r in requests]
        for r in requests:
            check_image(r.image)
        images = [r.image for r in requests]  # made square per batch, not all at once
        return self._iter_batches(prompts, images, batch_size, max_new_tokens, min_new_tokens)

    def _iter_batches(
        self,
        prompts: list[str],
        images: list[Any],
        batch_size: int,
        max_new_tokens: int,
        min_new_tokens: int,
    ) -> Iterator[list[GenerationResult]]:
        start = 0
        while start < len(prompts):
            size = min(batch_size, self._batch_cap or batch_size)
            idx = list(range(start, min(start + size, len(prompts))))
            start = idx[-1] + 1
            yield self._run_with_oom_split(idx, prompts, images, max_new_tokens, min_new_tokens)

    def _run_with_oom_split(
        self,
        idx: list[int],
        prompts: list[str],
        images: list[Any],
        max_new_tokens: int,
        min_new_tokens: int,
    ) -> list[GenerationResult]:
        try:
            return self._run_batch(idx, prompts, images, max_new_tokens, min_new_tokens)
        except torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(idx) == 1:
                raise DeviceOutOfMemoryError(
                    f"out of memory on {self.loaded.device_name} with a single tile "
                    f"(--max-new-tokens {max_new_tokens}): {exc}"
                ) from exc
            half = (len(idx) + 1) // 2
            self._batch_cap = half
            log.warning("out of memory with a batch of %d: retrying as batches of %d", len(idx), half)
            first = self._run_with_oom_split(idx[:half], prompts, images, max_new_tokens, min_new_tokens)
            second = self._run_with_oom_split(idx[half:], prompts, images, max_new_tokens, min_new_tokens)
            return first + second

    def _run_batch(
        self,
        idx: list[int],
        prompts: list[str],
        images: list[Any],
        max_new_tokens: int,
        min_new_tokens: int,
    ) -> list[GenerationResult]:
        t0 = time.perf_counter()
        inputs = self._prepare_batch(idx, prompts, images)
        input_ids = inputs["input_ids"].to(self.device)
        attention_mask = inputs["attention_mask"].to(self.device)
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.vision_dtype)
        sequences = self._generate_batch(
            input_ids, attention_mask, pixel_values, len(idx), max_new_tokens, min_new_tokens
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self._stopping.fired:
            self._stopping.fired = False
            raise CancelledError(f"cancelled during a batch of {len(idx)} tiles")
        elapsed = time.perf_counter() - t0
        if self.pad_shapes:
            self._note_first_shape((int(input_ids.shape[0]), int(input_ids.shape[1])), elapsed)
        new_tokens = sequences[:, input_ids.shape[1] :].cpu()
        n_inputs = attention_mask.sum(dim=1).tolist()
        return [
            self._result(i, prompts[i], new_tokens[row].tolist(), int(n_inputs[row]), elapsed, len(idx))
            for row, i in enumerate(idx)
        ]

    def _prepare_batch(self, idx: list[int], prompts: list[str], images: list[Any]) -> Any:
        """The processor's tensors for tiles ``idx`` (padded to a fixed shape on the compiled path)."""
        rows = list(idx)
        pad_kwargs: dict[str, Any] = {}
        if self.pad_shapes:
            rows += [idx[-1]] * (bucket_size(len(idx)) - len(idx))
            pad_kwargs["pad_to_multiple_of"] = COMPILED_SEQ_MULTIPLE
        batch_prompts = [prompts[i] for i in rows]
        try:
            return self.processor(
                images=[expand_to_square(images[i]) for i in rows],
                text=batch_prompts,
                padding=True,
                return_tensors="pt",
                **pad_kwargs,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise GenerationError(f"preparing a batch of {len(idx)} tiles failed: {exc}") from exc

    def _generate_batch(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        n_tiles: int,
        max_new_tokens: int,
        min_new_tokens: int,
    ) -> torch.Tensor:
        """The model's output sequences (prompt + new tokens); failures as this package's errors,
        except out of memory, which the caller splits on."""
        extra: dict[str, Any] = {}
        if self.should_stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([self._stopping])
        try:
            with torch.inference_mode():
                return self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    pixel_values=pixel_values,
                    generation_config=self._generation_config(max_new_tokens, min_new_tokens),
                    **extra,
                )
        except torch.OutOfMemoryError:
            raise
        except torch.AcceleratorError as exc:
            # A CUDA error (device-side assert, illegal address...) poisons the context: the process
            # that owns it must end, so it gets its own type.
            raise DeviceFailure(
                f"the device {self.loaded.device_name} failed during a batch of {n_tiles}: {exc}"
            ) from exc
        except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
            raise GenerationError(
                f"generation failed on {self.loaded.device_name} for a batch of {n_tiles}: {exc}"
            ) from exc

    def _note_first_shape(self, shape: tuple[int, int], elapsed: float) -> None:
        """Keep (and log) the time of the first batch of each padded (rows, tokens) ``shape``."""
        if shape not in self.first_shape_seconds:
            self.first_shape_seconds[shape] = elapsed
            log.info(
                "first batch of shape %d rows × %d tokens: %.1f s%s",
                *shape,
                elapsed,
                " (includes torch.compile)" if self.compiled else "",
            )

    def _result(
        self, index: int, prompt: str, tokens: list[int], input_tokens: int, elapsed: float, batch_size: int
    ) -> GenerationResult:
        """One row's result from its generated ``tokens`` (cut at ``</s>``, decoded, parsed)."""
        if self.eos_token_id in tokens:
            end = tokens.index(self.eos_token_id)
            kept, n_out, reason = tokens[:end], end + 1, "stop"
        else:
            kept, n_out, reason = tokens, len(tokens), "length"
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        stop = self.template.stop_str
        if stop and stop in text:
            text = text.split(stop, 1)[0].rstrip()
        return GenerationResult(
            index=index,
            answer=text,
            parsed=parse_answer(text),
            input_tokens=input_tokens,
            output_tokens=n_out,
            finish_reason=reason,
            seconds=elapsed / batch_size,
            batch_size=batch_size,
            prompt=prompt,
            token_ids=tuple(tokens[:n_out]),
        )
