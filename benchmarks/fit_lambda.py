"""Why the live secure fit uses lambda = 0.3: held-out quality of public-text ridge maps against the number of
texts and lambda, for a few encoder pairs. The secure fit cannot pick lambda by validation (that would need both
parties' embeddings in the clear), so it is fixed in advance from this table.

    .venv/bin/python benchmarks/fit_lambda.py [--held-out 200]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from securealign import alignment
from securealign.app_support.service import FIT_LAMBDA, FIT_TEXTS
from securealign.datasets import load_public_corpus
from securealign.models.embeddings import embed

PAIRS = (("minilm", "wordllama"), ("minilm", "mpnet"), ("wordllama", "minilm"), ("potion", "minilm"))
LAMBDAS = (0.1, 0.3, 1.0, 3.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", type=int, default=200, help="public texts after the largest fit, for scoring")
    args = parser.parse_args()
    sizes = FIT_TEXTS
    texts = load_public_corpus(max(sizes) + args.held_out)
    print(
        f"held-out R^2 / top-1 retrieval on {args.held_out} public texts after the first {max(sizes)}; "
        f"the app uses lambda = {FIT_LAMBDA}"
    )
    print(f"{'pair':22s} {'texts':>5s} | " + " | ".join(f"lambda {lam:<4g}" for lam in LAMBDAS))
    for source, target in PAIRS:
        z_b, z_a = embed(source, texts, progress=False), embed(target, texts, progress=False)
        held_b, held_a = z_b[max(sizes) :], z_a[max(sizes) :]
        for n in sizes:
            cells = []
            for lam in LAMBDAS:
                q = alignment.fit_quality(alignment.fit_ridge(z_b[:n], z_a[:n], relative_lambda=lam), held_b, held_a)
                cells.append(f"{q['r2']:5.2f} / {q['top1']:4.2f}")
            print(f"{source + ' -> ' + target:22s} {n:5d} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
