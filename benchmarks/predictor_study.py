"""The paper's predictor of cross-model generation, measured on every ordered causal pair of the zoo.

Three steps, each run under the heavy-job lock:

  flock /tmp/heavy.lock .venv/bin/python benchmarks/predictor_study.py extract [models...]
  flock /tmp/heavy.lock .venv/bin/python benchmarks/predictor_study.py maps qwen05 qwen15
  flock /tmp/heavy.lock .venv/bin/python benchmarks/predictor_study.py study

`extract` runs each model once over the fixed text set (the first 4,000 public-corpus texts, the committed maps'
corpus) and caches its last and penultimate states (securealign/generation/state_cache.py); `maps` fits the
committed maps of a pair from them (both directions, fit_hidden_map's split and penalty); `study` fits every
map and every row from those caches (securealign/experiments/predictor_study.py) and writes
assets/generation/predictor_study.json, which `python -m securealign report` prints.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

from securealign.generation.mapping import DEFAULT_CORPUS_SIZE, default_corpus
from securealign.generation.state_cache import extract_states
from securealign.models.causal_lm import CausalLM
from securealign.models.zoo import get_spec, list_models


def extract(keys: list[str], n_texts: int) -> None:
    texts = default_corpus(n_texts)
    for key in keys:
        start = time.perf_counter()
        lm = CausalLM(get_spec(key))  # not the per-process cache: each model is freed before the next loads
        path = extract_states(lm, texts)
        print(f"{key}: {path} ({time.perf_counter() - start:.0f} s, load {open('/proc/loadavg').read()[:14]})")
        del lm
        gc.collect()


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="cache each model's states over the fixed text set")
    ex.add_argument("models", nargs="*", default=[s.key for s in list_models("causal")])
    ex.add_argument("--texts", type=int, default=DEFAULT_CORPUS_SIZE)
    maps = sub.add_parser("maps", help="fit both directions of a pair from the caches into assets/generation/")
    maps.add_argument("models", nargs=2, default=["qwen05", "qwen15"])
    sub.add_parser("study", help="fit every map and row from the caches; write the JSON asset")
    args = parser.parse_args()
    if args.command == "extract":
        extract(args.models, args.texts)
    elif args.command == "maps":
        from securealign.experiments.predictor_study import save_committed_maps

        save_committed_maps(tuple(args.models))
    else:
        from securealign.experiments.predictor_study import main as study

        study([])


if __name__ == "__main__":
    main()
