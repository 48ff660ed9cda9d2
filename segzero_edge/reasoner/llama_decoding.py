"""The decoding policy: greedy tokens, and ``<think>`` free text then a grammar-bound answer.

With the answer grammar the generation has two phases: the thinking text is free, limited to
a budget and closed with ``</think>`` (forced when the model does not write it); the answer is
then sampled under the model family's GBNF (:mod:`segzero_edge.reasoner.grammar`), so it
always parses. Without it, plain greedy decoding up to a token budget, stopping at an
end-of-generation token or ``</answer>``; a fixed-length decode (for benchmarking) ignores
both and stops only at the budget or a full context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import grammar as gbnf
from .llama_engine import Engine
from .llama_objects import GrammarSampler, GreedySampler

Sampled = list[tuple[int, int]]
"""``(token, byte offset in the output where its text starts)`` per sampled token."""


@dataclass
class GenerationStats:
    """Details of the last ``generate`` call beyond
    :class:`~segzero_edge.backends.ReasonerOutput`."""

    think_tokens: int = 0
    answer_tokens: int = 0
    forced_tokens: int = 0
    think_truncated: bool = False
    n_image_tokens: int = 0
    tokens: list[int] = field(default_factory=list)
    """Every token that went into the context after the prompt (sampled and forced), in order."""
    prefix_cache_hit: bool = False


class Decoder:
    """Decodes one generation after the prompt into ``out`` (UTF-8 bytes), recording in
    ``stats``; ``grammar_text`` is the answer's GBNF and ``answer_cap`` its token bound."""

    def __init__(
        self, engine: Engine, grammar_text: str, answer_cap: int, stats: GenerationStats
    ) -> None:
        self.engine = engine
        self.grammar_text = grammar_text
        self.answer_cap = answer_cap
        self.stats = stats
        self.out = bytearray()

    def run(
        self,
        sampler: GreedySampler,
        n_past: int,
        budget: int,
        stops: tuple[bytes, ...],
        *,
        fixed_length: bool = False,
    ) -> tuple[int, Sampled, str]:
        """Greedy loop from the logits already in the context.

        Returns ``(n_past, sampled, reason)``, reason ``"eog"``, ``"stop"`` (a ``stops`` string
        in the last 16 bytes) or ``"budget"``. The last sampled token is decoded unless EOG.
        ``fixed_length`` checks neither end-of-generation tokens nor stop strings.
        """
        engine, out = self.engine, self.out
        toks: Sampled = []
        while len(toks) < budget:
            tok = sampler.sample(engine.ctx)
            if not fixed_length and engine.is_eog(tok):
                return n_past, toks, "eog"
            toks.append((tok, len(out)))
            out += engine.piece(tok)
            engine.decode([tok], n_past)
            self.stats.tokens.append(tok)
            n_past += 1
            tail = bytes(out[toks[-1][1] - 16 :]) if toks[-1][1] >= 16 else bytes(out)
            if not fixed_length and any(s in tail for s in stops):
                return n_past, toks, "stop"
        return n_past, toks, "budget"

    def force(self, text: str, n_past: int) -> tuple[int, int] | None:
        """Decode ``text`` as if generated: ``(n_past, n_tokens)``; ``None`` (nothing decoded)
        when the context is full."""
        toks = self.engine.tokenize(text)
        if len(toks) > self.engine.free_cells:
            return None
        self.engine.decode(toks, n_past)
        self.stats.tokens.extend(toks)
        self.out += text.encode()
        return n_past + len(toks), len(toks)

    def plain(self, n_past: int, budget: int, *, fixed_length: bool) -> tuple[int, bool]:
        """Greedy up to ``budget`` tokens: ``(n_generated, truncated)``."""
        with GreedySampler(self.engine.model.vocab) as chain:
            stop = (gbnf.ANSWER_CLOSE.encode(),)
            _, toks, why = self.run(chain, n_past, budget, stop, fixed_length=fixed_length)
        self.stats.think_tokens = len(toks)
        return len(toks), why == "budget"

    def constrained(self, n_past: int, think_budget: int) -> tuple[int, bool]:
        """Think (free, ``think_budget``) -> ``</think>`` -> grammar-constrained answer:
        ``(n_generated, truncated)``.

        The model's own tokens are kept wherever possible: when ``</think>`` ends inside a
        token whose remaining text (e.g. ``"<"`` of ``"><"``) can start an answer, that text
        is fed to the grammar instead of re-tokenizing. Only when the rest cannot start an
        answer, or the model opened ``<answer>`` without closing ``</think>``, is the last
        token replaced by forced text.
        """
        engine, out, stats = self.engine, self.out, self.stats
        vocab = engine.model.vocab
        close = gbnf.THINK_CLOSE.encode()
        opened = gbnf.ANSWER_OPEN.encode()
        with GreedySampler(vocab) as chain:
            n_past, toks, why = self.run(chain, n_past, think_budget, (close, opened))
        stats.think_tokens = len(toks)
        stats.think_truncated = why == "budget"
        text = bytes(out)
        answer_prefix: list[int] = []
        cut = -1
        if close in text:
            cut = text.index(close) + len(close)
            rest = text[cut:].decode("utf-8", errors="replace")
            if rest:
                answer_prefix = engine.tokenize(rest)
                with GrammarSampler(vocab, self.grammar_text) as check:
                    if check.accepts(answer_prefix):
                        cut = len(text)  # keep the model's token; the grammar starts mid-way
                    else:
                        answer_prefix = []
        elif opened in text:
            cut = text.index(opened)  # answer started without </think>: close thinking first
        forced = 0
        replaced = cut >= 0 and cut != len(text)
        n_think = stats.think_tokens - (1 if replaced else 0)
        if replaced:
            # drop the last token and re-feed its text up to the cut
            last_tok_start = toks[-1][1]
            n_past -= 1
            engine.rollback(n_past)
            stats.tokens.pop()
            keep = text[last_tok_start:cut]
            del out[last_tok_start:]
            if keep:
                done = self.force(keep.decode("utf-8", errors="replace"), n_past)
                if done is None:  # the context is full: no room left for an answer
                    return n_think, True
                n_past, k = done
                forced += k
        if close not in bytes(out):
            done = self.force(gbnf.THINK_CLOSE, n_past)
            if done is None:
                stats.forced_tokens = forced
                return n_think + forced, True
            n_past, k = done
            forced += k
        # the answer, under the grammar; the grammar's language is finite so it terminates
        with GreedySampler(vocab, self.grammar_text) as chain:
            for tok in answer_prefix:
                chain.accept(tok)
            cap = min(self.answer_cap, engine.free_cells)
            n_past, atoks, why = self.run(chain, n_past, cap, (gbnf.ANSWER_CLOSE.encode(),))
        stats.answer_tokens = len(atoks)
        stats.forced_tokens = forced
        return n_think + forced + len(atoks), stats.think_truncated or why == "budget"
