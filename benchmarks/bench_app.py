"""Benchmark: the demo's cold start and its first queries, as a user meets them.

Prints the seconds from ``python app.py`` to the first page answering (target: under 30 s), against the time a bare
``python -c "import gradio"`` takes in the same run (the floor no Gradio app can beat), then the latency of the
first encrypted query through the public API (which loads two encoders behind the progress bar) and of a warm one,
with the per-part breakdown the page shows (plus the reference path: the provider's model on the raw text).
"""

from __future__ import annotations

import subprocess
import sys
import time

from gradio_client import Client

from securealign import service
from securealign.app_process import launch_app  # one way to start the app, shared with the tests

TARGET_START_S = 30.0


def _query(client: Client, text: str, source: str, target: str, task: str) -> tuple[float, dict]:
    start = time.perf_counter()
    result = client.predict(text, source, target, task, "sealed", True, api_name="/classify")
    return time.perf_counter() - start, result


def main() -> None:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True)
    baseline = time.perf_counter() - start
    print(f"baseline: python -c 'import gradio'          {baseline:6.1f} s")
    start = time.perf_counter()
    with launch_app() as url:
        started = time.perf_counter() - start
        verdict = "PASS" if started < TARGET_START_S else "FAIL"
        print(f"app.py cold start to first page            {started:6.1f} s   ratio {started / baseline:4.1f}x   "
              f"({verdict}, target < {TARGET_START_S:.0f} s)")
        cat = service.catalogue()
        task, (source, target) = cat["tasks"][0][1], [k for _, k in cat["encoders"][:2]]
        text = service.examples(task)[0]
        client = Client(url, verbose=False)
        for label in ("first encrypted query (loads models)", "warm encrypted query"):
            seconds, result = _query(client, text, source, target, task)
            timings = {**result["timings_ms"], **result["reference_ms"]}
            parts = ", ".join(f"{name} {ms:.1f}" for name, ms in timings.items())
            print(f"{label:42s} {seconds:6.1f} s   [{source} -> {target}, ms: {parts}]")


if __name__ == "__main__":
    main()
