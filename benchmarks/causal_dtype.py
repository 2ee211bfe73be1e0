"""Does a zoo causal LM read and write the same in bfloat16 as in float32, and is it faster?

The Qwen models run in bf16 (``options["dtype"]``) to halve their memory; this checks, once, what that costs:
greedy continuations' text, next-token argmax at every position of a few texts, and the time per greedy token,
each in bf16 against fp32 in the same run. Loads the fp32 copy first and frees it before the bf16 one (the 1.5B
model holds 9 GB in fp32). Run under the heavy-job lock:
`flock /tmp/heavy.lock .venv/bin/python benchmarks/causal_dtype.py qwen05 qwen15`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import time

import numpy as np
import torch

from securealign.models.causal_lm import CausalLM
from securealign.models.zoo import get_spec

PROMPTS = [
    "The capital of France is Paris. The capital of Germany is",
    "The best way to learn a language is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):",
    "The stock market fell sharply on Monday after",
]
TEXTS = [
    "Rain fell on the quiet town all night, and by morning the river had risen over the old stone bridge.",
    "Scientists say the new vaccine could be ready for trials early next year, pending approval.",
    "A retired detective is pulled back into one last case when his former partner disappears.",
]
NEW_TOKENS = 32


def _measure(spec) -> dict:
    lm = CausalLM(spec)
    greedy, seconds, tokens = [], 0.0, 0
    for prompt in PROMPTS:
        t0 = time.perf_counter()
        ids = lm.greedy_ids(prompt, NEW_TOKENS)
        seconds += time.perf_counter() - t0
        tokens += len(ids)
        greedy.append(ids)
    with torch.inference_mode():
        argmax = [
            lm.model(input_ids=torch.from_numpy(lm.tokens(t)[0])[None]).logits[0].argmax(-1).numpy() for t in TEXTS
        ]
    # the same positions through the float32 head on the model's (post-norm) hidden states
    head_argmax = [lm.logits(lm.final_hidden(t).hidden).argmax(-1) for t in TEXTS]
    out = {"greedy": greedy, "argmax": argmax, "head_argmax": head_argmax, "s_per_token": seconds / tokens}
    del lm
    gc.collect()
    return out


def compare(key: str) -> dict:
    spec = get_spec(key)
    fp32 = _measure(dataclasses.replace(spec, options={**spec.options, "dtype": "float32"}))
    bf16 = _measure(dataclasses.replace(spec, options={**spec.options, "dtype": "bfloat16"}))
    same_text = sum(a == b for a, b in zip(fp32["greedy"], bf16["greedy"], strict=True))
    # tokens agreeing before the first divergence, over all prompts
    prefix = sum(
        next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        for a, b in zip(fp32["greedy"], bf16["greedy"], strict=True)
    )
    positions = sum(len(a) for a in fp32["argmax"])
    return {
        "model": key,
        "greedy_identical": f"{same_text}/{len(PROMPTS)}",
        "greedy_common_prefix_tokens": f"{prefix}/{sum(len(a) for a in fp32['greedy'])}",
        "argmax_agreement_model_logits": sum(
            int((a == b).sum()) for a, b in zip(fp32["argmax"], bf16["argmax"], strict=True)
        )
        / positions,
        "argmax_agreement_fp32_head": sum(
            int((a == b).sum()) for a, b in zip(fp32["argmax"], bf16["head_argmax"], strict=True)
        )
        / positions,
        "positions": positions,
        "fp32_s_per_token": round(fp32["s_per_token"], 3),
        "bf16_s_per_token": round(bf16["s_per_token"], 3),
        "bf16_over_fp32_time": round(bf16["s_per_token"] / fp32["s_per_token"], 2),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for key in args.models:
        print(json.dumps(compare(key), default=lambda x: np.asarray(x).tolist()), flush=True)


if __name__ == "__main__":
    main()
