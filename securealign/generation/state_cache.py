"""Hidden states of one causal LM over a fixed text set, extracted once and kept on disk.

On a 2-core machine the forward passes are what a hidden-state map costs; the predictor study fits dozens of maps
(every ordered pair, two source layers, several training sizes and penalties) and the committed maps come from
the same states, so each model reads the text set once. Both the final (post-norm) state and the second-to-last
layer's output are kept. The arrays are memory-mapped, so a study over several 1.5B-model caches stays small.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from securealign.models.causal_lm import CausalLM, TokenStates
from securealign.paths import cache_dir

LAYERS = ("last", "penultimate")
CHUNK_TEXTS = 256  # texts per forward chunk written to disk (bounds memory; the progress line's unit)


def states_dir(key: str, texts: list[str]) -> Path:
    """Where ``key``'s states over exactly ``texts`` are cached (the texts' hash is in the name)."""
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:12]
    return cache_dir() / "states" / f"{key}-{len(texts)}-{digest}"


@dataclass(frozen=True)
class CachedStates:
    """One model's tokens and states over a text set: text ``i`` spans rows ``starts[i]:starts[i + 1]``."""

    key: str
    starts: np.ndarray  # (n_texts + 1,)
    ids: np.ndarray  # (T,)
    offsets: np.ndarray  # (T, 2)
    last: np.ndarray  # (T, d) float32, post-norm (what the LM head consumes)
    penultimate: np.ndarray  # (T, d) float32, the second-to-last layer's output

    @property
    def n_texts(self) -> int:
        return len(self.starts) - 1

    def text(self, i: int, layer: str = "last") -> TokenStates:
        """Text ``i``'s tokens with the states of ``layer`` ("last" or "penultimate") as ``hidden``."""
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; valid layers: {', '.join(LAYERS)}")
        rows = slice(int(self.starts[i]), int(self.starts[i + 1]))
        return TokenStates(self.ids[rows], self.offsets[rows], np.asarray(getattr(self, layer)[rows]))


def extract_states(
    lm: CausalLM, texts: list[str], batch_size: int = 16, progress: Callable[[str], None] = print
) -> Path:
    """Run ``lm`` over ``texts`` once and write its states to the cache (a no-op when they are there)."""
    out = states_dir(lm.key, texts)
    if (out / "meta.json").exists():
        return out
    lengths = np.array([len(ids) for ids in lm.tokenizer(list(texts))["input_ids"]])
    starts = np.concatenate([[0], np.cumsum(lengths)])
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    shape = (int(starts[-1]), lm.dim)
    arrays = {name: np.lib.format.open_memmap(partial / f"{name}.npy", "w+", np.float32, shape) for name in LAYERS}
    ids = np.lib.format.open_memmap(partial / "ids.npy", "w+", np.int64, (shape[0],))
    offsets = np.lib.format.open_memmap(partial / "offsets.npy", "w+", np.int64, (shape[0], 2))
    t0 = time.perf_counter()
    for first in range(0, len(texts), CHUNK_TEXTS):
        chunk = lm.final_hidden_batch(texts[first : first + CHUNK_TEXTS], batch_size, penultimate=True)
        for i, states in enumerate(chunk, start=first):
            rows = slice(int(starts[i]), int(starts[i + 1]))
            if len(states.ids) != rows.stop - rows.start:
                raise RuntimeError(f"text {i}: {len(states.ids)} tokens in the batch, {rows.stop - rows.start} alone")
            ids[rows], offsets[rows] = states.ids, states.offsets
            arrays["last"][rows], arrays["penultimate"][rows] = states.hidden, states.penultimate
        done = min(first + CHUNK_TEXTS, len(texts))
        rate = starts[done] / (time.perf_counter() - t0)
        progress(f"  {lm.key}: {done}/{len(texts)} texts, {int(starts[done])} tokens, {rate:.0f} tokens/s")
    for array in (*arrays.values(), ids, offsets):
        array.flush()
    np.save(partial / "starts.npy", starts)
    seconds = time.perf_counter() - t0
    meta = {"key": lm.key, "texts": len(texts), "tokens": shape[0], "dim": lm.dim, "seconds": round(seconds, 1)}
    (partial / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)  # a crash mid-extraction never leaves a folder that looks complete
    return out


def load_states(key: str, texts: list[str]) -> CachedStates:
    """The cached states of ``key`` over ``texts``; a clear error when they were never extracted."""
    folder = states_dir(key, texts)
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(f"no cached states of {key!r} for these {len(texts)} texts in {folder}")

    def array(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r")

    return CachedStates(key, array("starts"), array("ids"), array("offsets"), array("last"), array("penultimate"))


def extraction_seconds(key: str, texts: list[str]) -> float:
    """How long the extraction took when it ran (its cost, for the study's notes)."""
    return float(json.loads((states_dir(key, texts) / "meta.json").read_text())["seconds"])
