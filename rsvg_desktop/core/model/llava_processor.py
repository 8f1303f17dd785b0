"""The converted model's processor: ``LlavaProcessor`` = ``LlavaImageProcessor`` at 504 px (GeoChat's
pad-to-square with the CLIP mean colour, resize, CLIP mean/std) + a LLaMA tokenizer built from GeoChat's
``tokenizer.model`` (``<image>``, ``<pad>``, left padding, ``legacy=True``) + the ``llava_v1`` chat template
built from the Python template."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rsvg_desktop.core.model.checkpoint import GeoChatCheckpoint, load_sentencepiece
from rsvg_desktop.core.model.vision_dims import VisionDims
from rsvg_desktop.core.prompt import IMAGE_TOKEN, LLAVA_V1, chat_template_jinja
from rsvg_desktop.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["CHAT_TEMPLATE", "GEOCHAT_IMAGE_SIZE", "PAD_TOKEN", "build_tokenizer", "write_processor"]

#: GeoChat's input size: CLIP's 336 px tower run at 504 px (36 x 36 patches of 14 px).
GEOCHAT_IMAGE_SIZE = 504
PAD_TOKEN = "<pad>"
#: GeoChat's ``llava_v1`` conversation as a Jinja chat template, built from the Python template
#: (:data:`rsvg_desktop.core.prompt.LLAVA_V1`), so the two cannot drift apart.
CHAT_TEMPLATE = chat_template_jinja(LLAVA_V1, IMAGE_TOKEN)


def build_tokenizer(ckpt: GeoChatCheckpoint) -> Any:
    """A transformers LLaMA tokenizer equal to GeoChat's ``tokenizer.model``, plus ``<image>`` and ``<pad>``.

    Built from the SentencePiece pieces directly (vocabulary + merges in piece order): no protobuf needed.
    """
    from tokenizers import AddedToken
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = load_sentencepiece(ckpt.path, vocab_size=ckpt.text.vocab_size)
    if sp.id_to_piece(3) != "<0x00>":
        log.warning("%s/tokenizer.model has no byte-fallback pieces at ids 3..258", ckpt.path)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    max_len = ckpt.config.get("max_position_embeddings", 2048)
    try:
        src_cfg = json.loads((ckpt.path / "tokenizer_config.json").read_text(encoding="utf-8"))
        max_len = int(src_cfg.get("model_max_length", max_len))
    except (OSError, ValueError, TypeError):
        log.info("%s: no usable tokenizer_config.json; model_max_length=%s", ckpt.path, max_len)
    if max_len > 10**9:
        max_len = int(ckpt.config.get("max_position_embeddings", 2048))
    tok = LlamaTokenizer(
        vocab=vocab,
        merges=generate_merges(vocab),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
        padding_side="left",
        model_max_length=max_len,
    )
    tok.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    tok.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False)})
    ids = tok.convert_tokens_to_ids([IMAGE_TOKEN, PAD_TOKEN])
    want = [ckpt.text.vocab_size, ckpt.text.vocab_size + 1]
    if ids != want:
        raise CheckpointError(f"{ckpt.path}/tokenizer.model: <image>/<pad> got ids {ids}, expected {want}")
    return tok


def write_processor(ckpt: GeoChatCheckpoint, vision: VisionDims, out: Path) -> Any:
    from transformers import LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    size = GEOCHAT_IMAGE_SIZE
    image_processor = LlavaImageProcessorPil(
        do_pad=True,  # GeoChat's image_aspect_ratio "pad": square with the CLIP mean colour (122, 116, 104)
        do_resize=True,
        size={"shortest_edge": size},
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_convert_rgb=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(ckpt),
        patch_size=vision.patch_size,
        vision_feature_select_strategy=ckpt.vision_feature_select_strategy,
        # CLIP's CLS token: (504/14)^2 + 1 - 1 (dropped by "default") = 1296 <image> tokens per image.
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    processor.save_pretrained(out)
    # transformers does not persist ``legacy``; without it a reload tokenizes "\n" after <image> without the
    # leading "▁" that GeoChat's training prompts had.
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc.update(
        {
            "legacy": True,
            "add_bos_token": True,
            "add_eos_token": False,
            "padding_side": "left",
            "chat_template": CHAT_TEMPLATE,
        }
    )
    tc_path.write_text(json.dumps(tc, indent=2) + "\n", encoding="utf-8")
    return processor
