"""A tiny random causal language model with a word-level tokenizer, saved to a folder.

Imported as ``from tiny_language_model import ...`` by the explanation tests (no download: the
model is built here with random weights, a few thousand parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from adcore.explain.facts import ExplanationFacts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

NEUTRAL_WORDS = tuple(
    "the a part region score is at of and on in image surface inspector shows".split()  # noqa: SIM905
)
"""Words without a verdict word: a model on them can never write a text that passes the
fact-check."""


def word_level_tokenizer(
    words: Sequence[str], special_tokens: Sequence[str] = ()
) -> tuple[PreTrainedTokenizerFast, dict[str, int]]:
    """A whitespace word-level tokenizer.

    Its vocabulary is ``[UNK]``, ``<pad>``, ``<eos>``, the special tokens, then ``words``.

    Returns:
        The tokenizer and its vocabulary (token -> id).
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    tokens = ["[UNK]", "<pad>", "<eos>", *special_tokens, *words]
    vocab = {token: index for index, token in enumerate(tokens)}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    extra = {"additional_special_tokens": list(special_tokens)} if special_tokens else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="<pad>", eos_token="<eos>", **extra
    )
    return tokenizer, vocab


def tiny_text_config(vocab: dict[str, int], max_positions: int) -> dict[str, object]:
    """The options of a 1-layer text model (hidden size 32, 2 heads) over ``vocab``.

    ``<eos>`` begins and ends a sequence and ``<pad>`` pads.
    """
    return {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": max_positions,
        "bos_token_id": vocab["<eos>"],
        "eos_token_id": vocab["<eos>"],
        "pad_token_id": vocab["<pad>"],
    }


def build_tiny_language_model(
    folder: Path,
    words: Sequence[str] = NEUTRAL_WORDS,
    *,
    seed: int = 0,
    initializer_range: float = 0.02,
) -> Path:
    """Save a 1-layer random Llama and a word-level tokenizer over ``words`` to ``folder``.

    Every other word is ``[UNK]``; ``<eos>`` ends a generation and ``<pad>`` pads.

    Args:
        folder: Where to save (created).
        words: The vocabulary besides the special tokens.
        seed: Seed of the random weights.
        initializer_range: Standard deviation of the random weights (the default is
            transformers'; larger weights let a small adapter change the output more).

    Returns:
        ``folder``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer, vocab = word_level_tokenizer(words)
    torch.manual_seed(seed)
    config = LlamaConfig(**tiny_text_config(vocab, 256), initializer_range=initializer_range)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TOY_WORDS = (*NEUTRAL_WORDS, "flagged", "passed", "as", "defective", "good")
"""Neutral words plus the verdict words of the explainer's prompt: a model on them can learn
the toy notes (:func:`toy_note`) from the verdict hint in the prompt."""
TOY_INIT = 0.2
"""Weight scale of the tiny model used for the toy notes (large enough to learn them quickly)."""
TOY_TRAINING = {"epochs": 20, "learning_rate": 0.02, "batch_size": 4}
"""LoRA options that learn the toy notes on the tiny model in a few seconds."""


def build_toy_language_model(folder: Path) -> Path:
    """Save the tiny model that learns the toy notes (:data:`TOY_WORDS`, :data:`TOY_INIT`)."""
    return build_tiny_language_model(folder, TOY_WORDS, initializer_range=TOY_INIT)


def passed_facts() -> ExplanationFacts:
    """Facts of a part that passed (score 12.0 under the threshold 29.4; no region)."""
    return ExplanationFacts.from_json(
        {
            "verdict": "good",
            "score": 12.0,
            "threshold": 29.4,
            "margin": -17.4,
            "relative_margin": -17.4 / 29.4,
            "image_height": 256,
            "image_width": 256,
            "part_box": [10, 10, 240, 240],
            "part_is_whole_image": False,
        }
    )


def toy_note(facts: ExplanationFacts) -> str:
    """A toy inspector's note: ``"flagged the part"`` or ``"passed the part"`` (no number)."""
    return "flagged the part" if facts.verdict == "defect" else "passed the part"


VISION_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""The special tokens a Qwen2-VL processor and chat template need."""
VISION_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""A minimal Qwen2-VL-style chat template (an image item becomes the image placeholder)."""


def build_tiny_vision_language_model(
    folder: Path, words: Sequence[str] = NEUTRAL_WORDS, *, seed: int = 0
) -> Path:
    """Save a random 1-layer Qwen2-VL (tiny vision and text towers) and its processor.

    The processor (word-level tokenizer over ``words`` plus the Qwen2-VL special tokens, an
    image processor resizing every image to at most 56 x 56 pixels, i.e. 4 image tokens, and a
    chat template) is built in code; ``AutoProcessor`` and ``AutoModelForImageTextToText`` load
    the folder back.

    Args:
        folder: Where to save (created).
        words: The vocabulary besides the special tokens.
        seed: Seed of the random weights.

    Returns:
        ``folder``.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer, vocab = word_level_tokenizer(words, VISION_SPECIAL_TOKENS)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=VISION_CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        text_config={
            **tiny_text_config(vocab, 512),
            # head size 16: the three rotary sections (time, height, width) sum to 16 / 2.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
            },
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


IDEFICS3_GRID_TOKENS = tuple(f"<row_{row}_col_{col}>" for row in range(1, 5) for col in range(1, 5))
IDEFICS3_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    *IDEFICS3_GRID_TOKENS,
)
"""The special tokens an Idefics3 (SmolVLM-256M) processor needs: image, tile and grid tokens."""
IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% else %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""A minimal SmolVLM-style chat template."""


def build_tiny_idefics3(
    folder: Path, words: Sequence[str] = NEUTRAL_WORDS, *, seed: int = 0
) -> Path:
    """Save a random 1-layer Idefics3 (the architecture of SmolVLM-256M) and its processor.

    Images are resized to at most 64 pixels and split into 32 x 32 tiles plus a global view;
    each tile is one image token (2 x 2 patches of 16 pixels, pixel-shuffled by 2).

    Args:
        folder: Where to save (created).
        words: The vocabulary besides the special tokens.
        seed: Seed of the random weights.

    Returns:
        ``folder``.
    """
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer, vocab = word_level_tokenizer(words, IDEFICS3_SPECIAL_TOKENS)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}
        ),
        tokenizer=tokenizer,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
        image_seq_len=1,
    )
    config = Idefics3Config(
        text_config={"model_type": "llama", **tiny_text_config(vocab, 1024)},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        image_token_id=vocab["<image>"],
        scale_factor=2,
        pad_token_id=vocab["<pad>"],
    )
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Idefics3ForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
