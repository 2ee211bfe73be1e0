"""Cross-model text generation: a source LM reads, a target LM's vocabulary head writes, in plaintext or with
the head evaluated under CKKS encryption by the provider. See docs/generation.md."""

from securealign.generation.pair import DEFAULT_SOURCE, DEFAULT_TARGET, ModelPair, load_pair, load_pair_alone
from securealign.generation.stream import stream_compare

__all__ = ["DEFAULT_SOURCE", "DEFAULT_TARGET", "ModelPair", "load_pair", "load_pair_alone", "stream_compare"]
