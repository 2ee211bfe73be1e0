"""Benchmark: what embedding the classification pipeline's texts costs per model, to decide which causal LMs fit.

For each model (default: every causal LM in the zoo, mean-pooled as the precompute pools them, beside minilm as the
baseline measured in the same run) and each text set the pipeline embeds (the public pool, and each task's train
split, whose texts are cut as ``datasets`` cuts them, e.g. BBC to its first 600 characters), it embeds the first
``--texts`` texts with the cache off and prints texts/s, seconds per text, mean tokens (the model's own
tokenizer; encoders: "-"), the ratio of its seconds per text to the baseline's on the same texts, and the
extrapolated seconds for every distinct text the precompute needs from that set (train + test for a task; its OOD
texts are another task's test texts, so they are counted there). The last line per model is the total.

Run under the shared lock (the CPU is shared): ``flock /tmp/heavy.lock .venv/bin/python
benchmarks/bench_causal_embedding.py`` (about 2 minutes per causal model at 100 texts per set); it prints
``/proc/loadavg`` before and after, since the numbers hold only for the load they were taken under.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from securealign.datasets import TASKS, load_public_corpus, load_task
from securealign.models.embeddings import embed
from securealign.models.zoo import get_spec, list_models

BASELINE = "minilm"


def text_sets() -> dict[str, tuple[list[str], int]]:
    """Each set's texts in the pipeline's order and how many distinct texts the precompute embeds from it."""
    sets = {"public": (load_public_corpus(), len(load_public_corpus()))}
    for name in TASKS:
        task = load_task(name)
        sets[name] = (task.train_texts, len(task.train_texts) + len(task.test_texts))
    return sets


def mean_tokens(key: str, texts: list[str]) -> str:
    if get_spec(key).kind != "causal":
        return "-"
    from securealign.models.causal_lm import load_causal_lm

    tokenizer = load_causal_lm(key).tokenizer
    return f"{sum(len(tokenizer(t)['input_ids']) for t in texts) / len(texts):.0f}"


def seconds_per_text(key: str, texts: list[str]) -> float:
    pooling = "mean" if get_spec(key).kind == "causal" else None
    embed(key, texts[:2], pooling=pooling, use_cache=False)  # load the model and warm up outside the timing
    start = time.perf_counter()
    embed(key, texts, pooling=pooling, use_cache=False, progress=False)
    return (time.perf_counter() - start) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[s.key for s in list_models("causal")])
    parser.add_argument("--texts", type=int, default=100, help="texts timed per set")
    args = parser.parse_args()
    print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    sets = text_sets()
    base = {name: seconds_per_text(BASELINE, texts[: args.texts]) for name, (texts, _) in sets.items()}
    print(
        f"{'model':10s} {'set':16s} {'tokens':>6s} {'texts/s':>8s} {'s/text':>7s} {'x ' + BASELINE:>9s} "
        f"{'texts':>6s} {'extrapolated s':>14s}"
    )
    for key in [BASELINE, *args.models]:
        total = 0.0
        for name, (texts, needed) in sets.items():
            sample = texts[: args.texts]
            per_text = base[name] if key == BASELINE else seconds_per_text(key, sample)
            total += per_text * needed
            print(
                f"{key:10s} {name:16s} {mean_tokens(key, sample):>6s} {1 / per_text:8.1f} {per_text:7.3f} "
                f"{per_text / base[name]:9.1f} {needed:6d} {per_text * needed:14.0f}"
            )
        print(f"{key:10s} {'all sets':16s} {'':>6s} {'':>8s} {'':>7s} {'':>9s} {'':>6s} {total:14.0f}")
    print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
