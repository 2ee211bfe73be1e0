"""Cross-model greedy decoding: the source model reads, the target model's LM head writes.

At each step the source model runs on the text so far (prompt + continuation, re-tokenized by the source
tokenizer), its last final hidden state goes through a *head* — the map composed with the target's LM head, in
plaintext or under encryption — and the highest logit picks the target token whose text is appended. Tokens are
yielded as they come so callers can stream them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from securealign.generation.encrypted import StepCost
from securealign.models.causal_lm import CausalLM

Head = Callable[[np.ndarray], np.ndarray]  # source final hidden state (d_source,) -> target logits (V,)


class PlainHead:
    """The composed map + LM head in plaintext: the reference the encrypted head must agree with."""

    def __init__(self, matrix: np.ndarray, bias: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        return self.matrix @ np.asarray(hidden, dtype=np.float64) + self.bias


class _Detokenizer:
    """Token ids -> the text they add. The whole continuation is re-decoded each time because a byte-level token
    may hold only part of a multi-byte character."""

    def __init__(self, model: CausalLM) -> None:
        self.tokenizer, self.ids, self.continuation = model.tokenizer, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        piece, self.continuation = text[len(self.continuation) :], text
        return piece


@dataclass(frozen=True)
class Token:
    """One decoded token: its target id, the text it added, and what the step cost."""

    id: int
    text: str
    source_ms: float  # the source model's forward pass
    head_ms: float  # the head: plaintext product, or encrypt + provider + decrypt
    cost: StepCost | None = None  # the encrypted round trip's parts, when the head is encrypted


def mapped_greedy(source: CausalLM, target: CausalLM, head: Head, prompt: str, max_new_tokens: int) -> Iterator[Token]:
    """Greedy continuation of ``prompt`` read by ``source`` and written by ``target``'s vocabulary through ``head``."""
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    source.tokens(prompt)  # validates the prompt before any work
    text = _Detokenizer(target)
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        hidden = source.final_hidden(prompt + text.continuation).hidden[-1]
        t1 = time.perf_counter()
        token = int(np.argmax(head(hidden)))
        t2 = time.perf_counter()
        yield Token(token, text.add(token), (t1 - t0) * 1e3, (t2 - t1) * 1e3, getattr(head, "last", None))
        if token in target.stop_ids:
            return


def native_greedy(model: CausalLM, prompt: str, max_new_tokens: int) -> Iterator[Token]:
    """A model's own greedy decoding, in the same :class:`Token` form (all time counted as the model's)."""
    text = _Detokenizer(model)
    t0 = time.perf_counter()
    for token in model.stream_greedy(prompt, max_new_tokens):
        t1 = time.perf_counter()
        yield Token(token, text.add(token), (t1 - t0) * 1e3, 0.0)
        t0 = time.perf_counter()
