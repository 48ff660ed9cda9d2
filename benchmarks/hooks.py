"""Benchmark-only hooks around the runtime's reasoner (never used by the runtime itself).

Random-weight models neither stop at a predictable length nor write a parseable answer, so the
benchmark (1) forces the decode length with the reasoner's ``fixed_length`` option (no token
ends the generation, no stop string is checked), and (2) hands ``SegZeroEdge.segment()``
the workload's answer text after that real generation, so parsing, SAM2 decoding and mask
post-processing run for a known number of objects.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from segzero_edge.backends import Reasoner, ReasonerOutput
from segzero_edge.reasoner.llama_cpp import LlamaCppReasoner


class FixedLengthReasoner(LlamaCppReasoner):
    """A :class:`LlamaCppReasoner` that decodes exactly ``tokens`` tokens per ``generate``.

    The reasoner's own ``fixed_length`` option (greedy, no grammar, end-of-generation tokens
    and stop strings ignored): the same work per token as ``transformers`` ``generate`` with
    ``min_new_tokens == max_new_tokens``. ``generate`` raises ``RuntimeError`` if a
    generation ends before the budget or a full context.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        mmproj_path: str | os.PathLike[str],
        *,
        tokens: int,
        **options: Any,
    ) -> None:
        super().__init__(
            model_path,
            mmproj_path,
            max_new_tokens=tokens,
            grammar=False,
            fixed_length=True,
            **options,
        )
        self.tokens = int(tokens)

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        out = super().generate(image, prompt, frame_key=frame_key)
        if not out.truncated:  # only the token budget (or a full context) may end it
            raise RuntimeError(
                f"llama.cpp stopped after {out.n_generated_tokens} of the forced {self.tokens} "
                "tokens: LlamaCppReasoner(fixed_length=True) no longer decodes to the budget"
            )
        return out


class CannedAnswer:
    """A :class:`~segzero_edge.backends.Reasoner` that runs ``inner`` then answers ``answer``.

    Timings and token counts are the real generation's; only the text is replaced, so the
    pipeline parses a known answer (set :attr:`answer` before each call).
    """

    def __init__(self, inner: Reasoner, answer: str = "") -> None:
        self.inner = inner
        self.answer = answer
        self.name = inner.name
        self.device_kind = inner.device_kind
        self.n_threads = inner.n_threads
        self.caches_prefix = inner.caches_prefix
        self.last: ReasonerOutput | None = None
        """The last real generation (its text is the model's own)."""

    def generate(
        self, image: np.ndarray, prompt: str, *, frame_key: str | None = None
    ) -> ReasonerOutput:
        out = self.last = self.inner.generate(image, prompt, frame_key=frame_key)
        return ReasonerOutput(
            text=self.answer,
            truncated=False,
            n_prompt_tokens=out.n_prompt_tokens,
            n_generated_tokens=out.n_generated_tokens,
            timings=dict(out.timings),
        )

    def close(self) -> None:
        self.inner.close()
