"""Batched generation with the tiny converted GeoChat on the CPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rsvg_desktop.core.model import generate as gen_mod
from rsvg_desktop.core.model.generate import (
    CPU_BATCH_SIZE,
    MAX_AUTO_BATCH,
    GenerationRequest,
    GenerationResult,
    GeoChatGenerator,
    auto_batch_size,
    expand_to_square,
)
from rsvg_desktop.core.model.loader import LoadSpec, load_model
from rsvg_desktop.core.model.memory import GIB, geochat7b_config, tile_bytes
from rsvg_desktop.core.model.precision import Precision
from rsvg_desktop.core.types import GridBox, ParseResult
from rsvg_desktop.errors import ConfigError, GenerationError

MAX_NEW = 8


def _tiles(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (504, 504, 3), dtype=np.uint8) for _ in range(n)]


def _mixed_requests() -> list[GenerationRequest]:
    a, b, c = _tiles(3)
    return [
        GenerationRequest(a, "grounding"),
        GenerationRequest(b, "refer", "the airplanes near the terminal"),
        GenerationRequest(
            c,
            "identify",
            region=GridBox(10, 70, 26, 82, 90),
            history=(("[grounding]Describe it.", "A port."),),
        ),
    ]


@pytest.fixture(scope="module")
def generators(tiny_converted_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One generator per precision, loaded on first use (the cache goes to a temporary folder)."""
    cache = tmp_path_factory.mktemp("gen-cache")
    made: dict[str, GeoChatGenerator] = {}

    def get(precision: str) -> GeoChatGenerator:
        if precision not in made:
            # group size 32: the tiny model's linears have 64 or 128 inputs (int4wo only)
            spec = LoadSpec(tiny_converted_dir, precision, "cpu", cache_dir=cache, group_size=32)
            loaded = load_model(spec)
            made[precision] = GeoChatGenerator(loaded)
        return made[precision]

    return get


# fp8 needs a GPU; q4cal needs a calibration first (test_calibrate.py generates with it end to end)
@pytest.mark.parametrize(
    "precision", [p.value for p in Precision if p is not Precision.FP8 and not p.needs_calibration]
)
def test_every_precision_generates_a_batch_of_three(generators, precision: str) -> None:
    gen = generators(precision)
    results = gen.generate(_mixed_requests(), max_new_tokens=MAX_NEW, batch_size=3)
    assert [r.index for r in results] == [0, 1, 2]
    for r in results:
        assert isinstance(r, GenerationResult)
        assert isinstance(r.parsed, ParseResult)
        assert r.batch_size == 3
        assert 1 <= r.output_tokens <= MAX_NEW
        assert len(r.token_ids) == r.output_tokens
        assert r.finish_reason in ("stop", "length")
        assert r.input_tokens > 1296  # 1296 image tokens + the prompt
        assert r.seconds > 0
        assert r.prompt.count("<image>") == 1
    assert results[1].prompt.endswith(
        "[refer] Give me the location of <p> the airplanes near the terminal </p> ASSISTANT:"
    )
    assert "</s>USER: [identify]" in results[2].prompt
    # different prompt lengths in one batch: left padding is not counted as input
    assert len({r.input_tokens for r in results}) == 3


def test_batched_equals_one_at_a_time_fp32(generators) -> None:
    gen = generators("fp32")
    reqs = _mixed_requests()
    batched = gen.generate(reqs, max_new_tokens=MAX_NEW, batch_size=3)
    single = gen.generate(reqs, max_new_tokens=MAX_NEW, batch_size=1)
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    assert [r.answer for r in batched] == [r.answer for r in single]
    assert [r.input_tokens for r in batched] == [r.input_tokens for r in single]
    assert all(r.batch_size == 1 for r in single)


def test_left_padded_prefill_logits_match_unpadded_fp32(generators) -> None:
    """Stronger than equal tokens: the next-token logits of a padded row equal its unpadded ones."""
    gen = generators("fp32")
    reqs = _mixed_requests()
    prompts = [gen.build_prompt(r) for r in reqs]
    images = [expand_to_square(r.image) for r in reqs]

    def last_logits(idx: list[int]) -> torch.Tensor:
        inputs = gen.processor(
            images=[images[i] for i in idx], text=[prompts[i] for i in idx], padding=True, return_tensors="pt"
        )
        assert (inputs["attention_mask"][:, -1] == 1).all(), "left padding"
        with torch.inference_mode():
            out = gen.model(**inputs)
        return out.logits[:, -1, :]

    batched = last_logits([0, 1, 2])
    for i in range(3):
        torch.testing.assert_close(batched[i], last_logits([i])[0], rtol=1e-4, atol=1e-4)


def test_iter_generate_yields_per_batch(generators) -> None:
    gen = generators("fp32")
    reqs = _mixed_requests()
    batches = list(gen.iter_generate(reqs, max_new_tokens=4, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    assert [r.index for b in batches for r in b] == [0, 1, 2]
    assert [b[0].batch_size for b in batches] == [2, 1]
    # a caller can stop between batches
    it = gen.iter_generate(reqs, max_new_tokens=4, batch_size=1)
    first = next(it)
    it.close()
    assert [r.index for r in first] == [0]


def test_same_prompt_many_tiles_and_min_new_tokens(generators) -> None:
    gen = generators("nf4")
    reqs = [GenerationRequest(t, "vqa", "Is there a road?") for t in _tiles(4, seed=3)]
    results = gen.generate(reqs, max_new_tokens=5, min_new_tokens=5, batch_size=4)
    assert [r.output_tokens for r in results] == [5, 5, 5, 5]
    assert all(r.finish_reason == "length" for r in results)
    assert len({r.input_tokens for r in results}) == 1


def test_images_pil_and_non_square(generators) -> None:
    gen = generators("fp32")
    tile = _tiles(1)[0]
    wide = np.ascontiguousarray(tile[:300])  # 300 x 504
    reqs = [
        GenerationRequest(Image.fromarray(tile), "vqa", "What is this?"),
        GenerationRequest(wide, "vqa", "What is this?"),
        GenerationRequest(Image.fromarray(tile).convert("L"), "vqa", "What is this?"),
    ]
    results = gen.generate(reqs, max_new_tokens=3, batch_size=3)
    assert len(results) == 3
    same = gen.generate([GenerationRequest(tile, "vqa", "What is this?")], max_new_tokens=3, batch_size=1)
    assert same[0].token_ids == results[0].token_ids


def test_expand_to_square_pads_with_clip_mean() -> None:
    img = np.zeros((10, 30, 3), dtype=np.uint8)
    out = np.asarray(expand_to_square(img))
    assert out.shape == (30, 30, 3)
    assert tuple(out[0, 0]) == (122, 116, 104)
    assert tuple(out[15, 15]) == (0, 0, 0)
    with pytest.raises(ConfigError):
        expand_to_square(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ConfigError):
        expand_to_square(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ConfigError):
        expand_to_square("tile.png")


def test_bad_requests_fail_before_any_batch(generators, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generators("fp32")

    def boom(*args, **kwargs):
        raise AssertionError("the model must not run")

    monkeypatch.setattr(gen, "_run_batch", boom)
    tile = _tiles(1)[0]
    with pytest.raises(ConfigError):
        gen.generate([GenerationRequest(tile, "vqa", "ok"), GenerationRequest(tile, "identify")])
    with pytest.raises(ConfigError):
        gen.generate([GenerationRequest(tile, "no-such-task", "x")])
    with pytest.raises(ConfigError):
        gen.generate([GenerationRequest(np.zeros((5, 5)), "vqa", "x")])
    with pytest.raises(ConfigError):
        gen.generate([GenerationRequest(tile, "vqa", "x")], max_new_tokens=0)
    with pytest.raises(ConfigError):
        gen.generate([GenerationRequest(tile, "vqa", "x")], batch_size=0)
    assert gen.generate([]) == []
    # iter_generate checks when called, not at the first next()
    with pytest.raises(ConfigError):
        gen.iter_generate([GenerationRequest(tile, "identify")])


def test_oom_splits_the_batch(generators, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generators("fp32")
    real = gen._run_batch
    sizes: list[int] = []

    def limited(idx, *args, **kwargs):
        sizes.append(len(idx))
        if len(idx) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(idx, *args, **kwargs)

    monkeypatch.setattr(gen, "_run_batch", limited)
    monkeypatch.setattr(gen, "_batch_cap", None)
    reqs = _mixed_requests()
    results = gen.generate(reqs, max_new_tokens=3, batch_size=3)
    assert [r.index for r in results] == [0, 1, 2]
    assert all(r.batch_size == 1 for r in results)
    assert sizes[0] == 3 and 2 in sizes
    assert gen._batch_cap == 1  # later batches start small


def test_oom_with_one_tile_is_a_generation_error(generators, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generators("fp32")

    def always(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gen, "_run_batch", always)
    monkeypatch.setattr(gen, "_batch_cap", None)
    with pytest.raises(GenerationError, match="single tile"):
        gen.generate(_mixed_requests()[:2], max_new_tokens=3, batch_size=2)


def test_model_failure_is_a_generation_error(generators, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generators("fp32")

    def broken(*args, **kwargs):
        raise RuntimeError("device-side assert triggered")

    monkeypatch.setattr(gen.model, "generate", broken)
    with pytest.raises(GenerationError, match="device-side"):
        gen.generate(_mixed_requests()[:1], max_new_tokens=3, batch_size=1)


def test_generator_state_is_built_once(generators) -> None:
    gen = generators("fp32")
    assert gen.tokenizer.padding_side == "left"
    assert gen.vision_dtype is torch.float32
    assert gen.generation_config.do_sample is False
    assert gen.generation_config.num_beams == 1
    assert gen.generation_config.eos_token_id == gen.tokenizer.eos_token_id
    processor, config = gen.processor, gen._generation_config(4, 0)
    gen.generate(_mixed_requests()[:1], max_new_tokens=4, batch_size=1)
    assert gen.processor is processor
    assert gen._generation_config(4, 0) is config


def test_auto_batch_size_cpu(generators) -> None:
    assert auto_batch_size(generators("fp32").loaded, 256) == CPU_BATCH_SIZE


def test_auto_batch_size_cuda_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    config = geochat7b_config()
    fake = SimpleNamespace(device="cuda:0", model=SimpleNamespace(config=config), dtype=torch.bfloat16)
    per_tile = tile_bytes(
        config, prompt_tokens=gen_mod.PROMPT_TOKENS_GUESS, max_new_tokens=256, dtype=torch.bfloat16
    )

    def mem(free_gib: float, total_gib: float):
        monkeypatch.setattr(
            torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * GIB), int(total_gib * GIB))
        )

    mem(20, 24)
    assert auto_batch_size(fake, 256) == int((20 * GIB - 1.2 * GIB) // per_tile)
    mem(130, 141)
    assert auto_batch_size(fake, 256) == MAX_AUTO_BATCH
    mem(0.5, 24)
    assert auto_batch_size(fake, 256) == 1


def test_stops_at_eos_and_counts_tokens(generators, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generators("fp32")
    eos, pad = gen.eos_token_id, gen.pad_token_id
    words = gen.tokenizer("{<10><20><30><40>|<90>}", add_special_tokens=False)["input_ids"]
    assert eos not in words

    def fake_generate(input_ids, attention_mask, pixel_values, generation_config):
        assert generation_config.max_new_tokens == len(words) + 2
        assert pixel_values.dtype is gen.vision_dtype
        rows = [[*words, eos, pad], words + words[:2]]
        new = torch.tensor(rows, dtype=input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)

    monkeypatch.setattr(gen.model, "generate", fake_generate)
    tiles = _tiles(2)
    reqs = [GenerationRequest(t, "refer", "cars") for t in tiles]
    stopped, cut = gen.generate(reqs, max_new_tokens=len(words) + 2, batch_size=2)
    assert stopped.finish_reason == "stop"
    assert stopped.output_tokens == len(words) + 1
    assert stopped.token_ids[-1] == eos
    assert stopped.answer == "{<10><20><30><40>|<90>}"
    assert stopped.parsed.objects[0].box == GridBox(10, 20, 30, 40, 90)
    assert cut.finish_reason == "length"
    assert cut.output_tokens == len(words) + 2


def test_should_stop_abandons_the_batch_in_flight(tiny_converted_dir):
    """A cancel is seen between generated tokens: the batch stops early and raises CancelledError;
    the next call (cancel cleared) generates normally."""
    import numpy as np

    from rsvg_desktop.core.model.generate import GenerationRequest, GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model
    from rsvg_desktop.errors import CancelledError

    gen = GeoChatGenerator(load_model(LoadSpec(tiny_converted_dir, "fp32", "cpu")))
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    gen.should_stop = stop_after_three
    req = [GenerationRequest(np.zeros((504, 504, 3), np.uint8), "vqa", "what is this?")]
    with pytest.raises(CancelledError):
        gen.generate(req, max_new_tokens=64, min_new_tokens=64, batch_size=1)
    assert calls["n"] == 3  # stopped at the third token, not after 64
    gen.should_stop = lambda: False
    (res,) = gen.generate(req, max_new_tokens=5, min_new_tokens=5, batch_size=1)
    assert res.output_tokens == 5
