"""A (source, target) model pair ready to generate: both models, the fitted map, and its heads.

Loading models, fitting the map and compiling the encrypted head are each done once per process; the app, the
CLI, the benchmark and the table script all go through here.
"""

from __future__ import annotations

import functools
import gc
import threading
from dataclasses import dataclass

from securealign.generation.decoding import PlainHead
from securealign.generation.encrypted import EncryptedHead
from securealign.generation.mapping import DEFAULT_CORPUS_SIZE, HiddenMap, default_corpus, load_hidden_map
from securealign.models.causal_lm import CausalLM, load_causal_lm, release_causal_lms

# Per the measurements: Gemma's 262k vocabulary reads, SmolLM2's 49k vocabulary is the one served encrypted.
DEFAULT_SOURCE, DEFAULT_TARGET = "gemma3", "smollm2"


@dataclass
class ModelPair:
    source: CausalLM
    target: CausalLM
    hidden_map: HiddenMap
    plain_head: PlainHead

    @functools.cached_property
    def encrypted_head(self) -> EncryptedHead:
        """The provider's compiled diagonals and a client's keys (a few seconds and ~0.7 GB, once)."""
        return EncryptedHead(self.plain_head.matrix, self.plain_head.bias)


@functools.lru_cache(maxsize=4)
def load_pair(
    source_key: str = DEFAULT_SOURCE, target_key: str = DEFAULT_TARGET, corpus_size: int = DEFAULT_CORPUS_SIZE
) -> ModelPair:
    """The pair with its map, fitted on the first ``corpus_size`` public-corpus texts (cached on disk)."""
    source, target = load_causal_lm(source_key), load_causal_lm(target_key)
    hidden_map = load_hidden_map(source_key, target_key, default_corpus(corpus_size))
    return ModelPair(source, target, hidden_map, PlainHead(*hidden_map.compose(target.lm_head())))


_held: list[tuple[str, str, int]] = []  # the pair load_pair_alone last returned
_loading = threading.Lock()  # a warm-up thread and a visitor's click must not load the same pair twice over


def load_pair_alone(
    source_key: str = DEFAULT_SOURCE, target_key: str = DEFAULT_TARGET, corpus_size: int = DEFAULT_CORPUS_SIZE
) -> ModelPair:
    """:func:`load_pair`, after letting go of any other pair this process holds (its composed and encrypted heads,
    and its models unless the new pair uses the same two): an app that switches pairs holds one at a time. A
    Qwen2.5 pair with its 152k-token encrypted head takes several GB, so two pairs at once would not fit a 16 GB
    Space beside the classification models."""
    wanted = (source_key, target_key, corpus_size)
    with _loading:
        if _held and _held[0] != wanted:
            load_pair.cache_clear()
            if set(_held[0][:2]) != {source_key, target_key}:
                release_causal_lms()
            gc.collect()
        _held[:] = [wanted]
        return load_pair(*wanted)
