"""The Qwen-VL chat template of one user turn, as text and as parts for libmtmd.

Follows the Hugging Face chat templates of Qwen2.5-VL-Instruct (a default system turn, "You are
a helpful assistant.") and Qwen3-VL-Instruct (no system turn): ``<|im_start|>role\\n...
<|im_end|>\\n`` turns, the image before the user's text, and the assistant turn opened. The
backbone is read from the text GGUF's ``general.architecture`` (:data:`BACKBONES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import IMAGE_TOKENS, PATCH_MERGE, QWEN3VL_PATCH_MERGE, QWEN3VL_RESIZE_SIZE

SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class Backbone:
    """What the reasoner needs to know of a GGUF architecture: the chat template's system turn
    (``None``: none) and the pixels per image-token side; ``default_image_tokens`` is used
    when the caller pins none."""

    system_prompt: str | None
    patch_merge: int
    default_image_tokens: int


BACKBONES: dict[str, Backbone] = {
    # Qwen2.5-VL-Instruct's template adds "You are a helpful assistant." when no system turn
    "qwen2vl": Backbone(SYSTEM_PROMPT, PATCH_MERGE, IMAGE_TOKENS),
    # Qwen3-VL-Instruct's template adds no system turn
    "qwen3vl": Backbone(
        None, QWEN3VL_PATCH_MERGE, (QWEN3VL_RESIZE_SIZE // QWEN3VL_PATCH_MERGE) ** 2
    ),
}
"""GGUF ``general.architecture`` -> :class:`Backbone`."""


def chat_prompt(
    user_text: str, media_marker: str, system_prompt: str | None = SYSTEM_PROMPT
) -> str:
    """Qwen-VL chat text for one user turn: image (``media_marker``) then ``user_text``;
    a system turn with ``system_prompt`` first unless it is None (Qwen3-VL).

    libmtmd replaces the marker by ``<|vision_start|>`` + image tokens + ``<|vision_end|>``,
    which is what the HF chat template writes around ``<|image_pad|>``.
    """
    system = "" if system_prompt is None else f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
    return f"{system}<|im_start|>user\n{media_marker}{user_text}<|im_end|>\n<|im_start|>assistant\n"


_USER, _MEDIA = "\x00user\x00", "\x00media\x00"  # stand-ins no template or prompt holds


def chat_parts(user_text: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[tuple[str, str]]:
    """:func:`chat_prompt` as ``(kind, text)`` parts in order: ``"template"`` (special tokens
    parsed), ``"image"`` (the image's place) and ``"user"`` (``user_text``, plain text)."""
    parts: list[tuple[str, str]] = []
    for piece in chat_prompt(_USER, _MEDIA, system_prompt).split("\x00"):
        if piece in ("user", "media"):
            parts.append(("user", user_text) if piece == "user" else ("image", ""))
        elif piece:
            parts.append(("template", piece))
    return parts


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8 bytes.

    Raises:
        ValueError: naming ``what`` and the first lone surrogate when ``text`` has one.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid text: lone surrogate {text[e.start]!r} at index {e.start} "
            "(a non-UTF-8 byte?)"
        ) from None
