"""securealign's demo: pick models, see their representations converge, run a query natively, mapped and encrypted.

Started by ``scripts/demo.sh`` and by the Hugging Face Space (``Dockerfile``); host and port come from
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``. This file only lays out widgets and wires them to
:mod:`securealign.service` (numbers) and :mod:`securealign.figures` (plots): the first page is drawn from the
precomputed ``assets/`` alone, and models load on first use behind a progress bar.

Public API (``gradio_client``): ``/classify`` takes (text, client model, provider model, task, mode, encrypted)
and returns the comparison as JSON; ``/secure_fit`` (client model, provider model, mode, public texts, task) fits a
map under encryption; ``/generate`` streams cross-model text. See docs/app.md.
"""

from __future__ import annotations

import functools
import inspect

import gradio as gr
import pandas as pd

from securealign import figures, service
from securealign.crypto import THREAT_MODELS

CONCURRENCY = 2  # two CPU cores on a Space: more parallel queries would only queue inside numpy and SEAL
QUEUE_SIZE = 32
PREDICTION_NAMES = {  # the names figures.VARIANT_COLOURS knows
    "native": "native target",
    "mapped_plaintext": "mapped (plaintext)",
    "mapped_encrypted": "mapped (encrypted)",
}
PREDICTION_HELP = {
    "native": "provider's model on the raw text (reference: needs the text)",
    "mapped_plaintext": "client's model → map → provider's head, in plaintext",
    "mapped_encrypted": "the same under CKKS encryption",
}
STREAM_NAMES = {"native_source": "source model alone", "native_target": "target model alone",
                "mapped": "source read → target head writes"}
INTRO = """# securealign: one model's task head, served to another model's embeddings — under encryption
Independently trained models learn **linearly compatible** representations. A client with its own model maps its
embedding into the provider's space with an affine map fitted on public text, and the provider's linear head
classifies it **without seeing the query** (CKKS homomorphic encryption, TenSEAL/SEAL). Every number below is
computed from real models and real data; the first tabs read precomputed results, queries run live."""


def _readable_errors(fn):
    """Show refusals (bad input, unknown names, missing assets, models that fail to load) as a message, never a
    traceback; generators (streamed generation) are wrapped the same way."""

    def convert(exc: Exception) -> gr.Error:
        return gr.Error(str(exc), print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except (ValueError, FileNotFoundError) as exc:
                raise convert(exc) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as exc:
            raise convert(exc) from exc
    return wrapper


def _progress_fn(progress: gr.Progress):
    return lambda fraction, what: progress(fraction, desc=what)


# ---- formatting (no numbers are computed here) -----------------------------------------------------------------

def _bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} B"


def _summary(result: dict) -> str:
    def line(key: str) -> str:
        pred = result[key]
        if pred is None:
            return f"| {PREDICTION_NAMES[key]} | {PREDICTION_HELP[key]} | *encryption off* | |"
        return (f"| {PREDICTION_NAMES[key]} | {PREDICTION_HELP[key]} | **{pred['label']}** | "
                f"{max(pred['probabilities'].values()):.3f} |")

    agree = result["agreement"]
    lines = [f"### {result['source_name']} (client) → {result['target_name']} (provider), {result['mode']} mode",
             "| | how | prediction | probability |", "|---|---|---|---|",
             line("native"), line("mapped_plaintext"), line("mapped_encrypted"), ""]
    if "encrypted_vs_plaintext" in agree:
        verdict = "agree" if agree["encrypted_vs_plaintext"] else "DISAGREE"
        cause = ("CKKS noise" if agree["within_ckks_noise"] else
                 "**more than CKKS noise: the provider's model is not this pair's**")
        lines.append(f"Encrypted and plaintext predictions **{verdict}**; largest logit difference "
                     f"{agree['max_logit_error']:.1e} ({cause}).")
    lines.append(f"Mapped prediction {'matches' if agree['mapped_vs_native'] else 'differs from'} "
                 "the provider model's own prediction on the raw text. For scale: "
                 + ", ".join(f"{name} {ms:.2f} ms" for name, ms in result["reference_ms"].items()) + ".")
    return "\n".join(lines)


def _protocol_table(result: dict) -> pd.DataFrame:
    rows = [{"#": s["number"], "party": s["party"], "step": s["what"], "ms": round(s["ms"], 2),
             "sent": _bytes(s["bytes"]) if s["bytes"] else "", "hex preview (middle bytes)": s["preview"]}
            for s in result["protocol"]]
    return pd.DataFrame(rows, columns=["#", "party", "step", "ms", "sent", "hex preview (middle bytes)"])


def _keys_md(result: dict) -> str:
    keys, threat = result["key_material"], result["threat_model"]
    head = ""
    if keys:
        head = (f"**This session's keys**: public context (CKKS parameters + Galois keys for rotations "
                f"{keys['rotation_steps']}) = {_bytes(keys['public_context_bytes'])}, sent once; the secret key is "
                f"{keys['secret_key']}. Imaginary residue of the decrypted logits: {keys['ckks_residue']:.1e}.\n\n")
    return (head + f"**{threat['title']}** — client learns: {threat['client_learns']}; provider learns: "
            f"{threat['provider_learns']}.")


def _threat_md() -> str:
    parts = []
    for threat in THREAT_MODELS.values():
        parts.append(f"## {threat['title']}\n"
                     f"| | in plain words |\n|---|---|\n"
                     f"| the client learns | {threat['client_learns']} |\n"
                     f"| the provider learns | {threat['provider_learns']} |\n"
                     f"| the provider holds | {threat['provider_holds']} |\n"
                     f"| limits | {threat['limits']} |\n")
    parts.append("## In this demo\nBoth parties run inside this server so that one page can show them; each browser "
                 "session gets its own CKKS keys, kept in that session's state and dropped when it ends. The "
                 "provider object only ever receives the public context (parameters and Galois keys) and "
                 "ciphertexts. For two real machines run the provider as `python -m securealign serve` "
                 "(see docs/protocol.md). Your queries are never written to the embedding cache.")
    return "\n".join(parts)


# ---- callbacks -------------------------------------------------------------------------------------------------

@_readable_errors
def similarity_figure(dataset: str, metric: str):
    sim = service.similarity(dataset, metric)
    return figures.heatmap(sim["matrix"], sim["labels"], sim["labels"], value_name=metric, row_axis="model",
                           col_axis="model",
                           title=f"{sim['metric_label']} between models on {sim['dataset_label']} "
                                 f"({sim['n_texts']} texts)")


@_readable_errors
def fit_figure(task: str, regime: str, measure: str):
    fit = service.map_quality_matrix(task, regime, measure)
    return figures.heatmap(fit["matrix"], fit["labels"], fit["labels"], value_name=measure,
                           row_axis="client (source)", col_axis="provider (target)",
                           title=f"{service.FIT_MEASURES[measure]} — {task}, map fitted on '{regime}'")


@_readable_errors
def example_choices(task: str):
    texts = service.examples(task)
    return gr.Dropdown(choices=[(t if len(t) <= 90 else t[:87] + "…", t) for t in texts], value=None)


@_readable_errors
def run_query(text: str, source: str, target: str, task: str, mode: str, encrypted: bool, client,
              progress=gr.Progress()):
    """Classify one text natively, mapped and (optionally) encrypted; returns the comparison as JSON."""
    result, client = service.classify(text, source, target, task, mode, encrypted, client, _progress_fn(progress))
    return result, result, client


def show_query(result: dict | None):
    if not result:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    series = {name: [result[k]["probabilities"][c] for c in result["classes"]]
              for k, name in PREDICTION_NAMES.items() if result[k] is not None}
    return (_summary(result),
            figures.probability_bars(result["classes"], series),
            figures.latency_bars(result["timings_ms"]),
            _protocol_table(result), _keys_md(result))


def _fit_md(result: dict) -> str:
    holder = ("the client now holds the map; the provider saw only ciphertexts of the client's embeddings"
              if result["mode"] == "paper" else
              "the provider now holds the map and can serve map + head in sealed mode; the client saw only "
              "ciphertexts of the provider's embeddings, and its receipt carries no map")
    secure, plain = result["quality_secure"], result["quality_plaintext"]
    work = ("The client encrypts its rows, then decrypts and solves; the provider multiplies ciphertexts."
            if result["mode"] == "paper" else
            "The provider encrypts its rows and decrypts the map; the client multiplies ciphertexts.")
    return "\n".join([
        f"**{result['source_name']} (client) → {result['target_name']} (provider), {result['mode']} mode, "
        f"{result['n_texts']} public texts**: {holder} ({result['map_shape'][0]} × {result['map_shape'][1]}).  ",
        f"**Cost**: {result['secure_ms'] / 1e3:.1f} s under encryption vs {result['plaintext_ms']:.0f} ms for the "
        f"plaintext ridge fit; {_bytes(result['bytes_up'])} client → provider, {_bytes(result['bytes_down'])} "
        f"provider → client. {work}  ",
        (f"**Same map as in plaintext**: largest difference from the plaintext ridge solution "
         f"{result['max_abs_difference']:.1e} (CKKS noise; λ = {result['lambda']} fixed in advance).  "
         if result["matches_plaintext"] else
         f"**Warning: this map differs from the plaintext ridge solution** by up to "
         f"{result['max_abs_difference']:.1e}; do not use it.  "),
        f"**How good the map is** on {result['held_out']} held-out public texts: R² {secure['r2']:.3f} "
        f"(plaintext {plain['r2']:.3f}), mean cosine {secure['cosine']:.3f}, top-1 retrieval {secure['top1']:.1%}. "
        "More texts give a better map at a linear cost.  ", *_task_md(result["task_accuracy"])])


def _task_md(acc: dict | None) -> list[str]:
    if acc is None:
        return []
    return [f"**What the map is for** ({acc['title']}, all {acc['n_test']:,} test texts): the provider's head is right "
            f"on {acc['provider_native']:.1%} of its own embeddings and on {acc['through_this_map']:.1%} of the "
            f"client's embeddings through this map (the precomputed public-only map, fitted on "
            f"{acc['public_map_texts']:,} texts: {acc['public_map_precomputed']:.1%})."]


@_readable_errors
def run_secure_fit(source: str, target: str, mode: str, n_texts: float, task: str,
                   progress=gr.Progress(track_tqdm=True)):
    """Fit the client's map on public texts under encryption, compare it with the plaintext fit and measure the
    provider's task head through it (JSON)."""
    result = service.secure_fit(source, target, mode, n_texts, task, _progress_fn(progress))
    timings = {"client": result["party_ms"]["client"], "provider": result["party_ms"]["provider"],
               "plaintext ridge": result["plaintext_ms"]}
    return result, _fit_md(result), figures.latency_bars(timings, title="Secure fit vs plaintext (ms)")


@_readable_errors
def ood_figure(task: str, source: str, target: str):
    ood = service.ood_comparison(task, source, target)
    return figures.energy_histograms(ood["scores"], ood["metrics"], in_name=f"in: {ood['in_name']}",
                                     out_name=f"out: {ood['out_name']}")


def _generation_md(snap: dict) -> str:
    def num(value, fmt: str = ".3f") -> str:
        return "n/a" if value is None else format(value, fmt)

    compat, fit = snap["compatibility"], snap["map"]
    lines = [f"**Tokenizer compatibility** (the paper's predictor of success): exact token match "
             f"{num(compat['exact_match_rate'])}, vocabulary Jaccard {num(compat['vocabulary_jaccard'])}  ",
             f"**Map fit** on held-out tokens: R² {num(fit.get('r2'))}, next-token agreement "
             f"{num(fit.get('next_token_agreement'))}  "]
    if "encrypted_step" in snap:
        step = snap["encrypted_step"]
        lines.append(f"**Last encrypted token**: client encrypts {step['encrypt_ms']:.0f} ms, provider "
                     f"{step['provider_ms']:.0f} ms, client decrypts {step['decrypt_ms']:.0f} ms; "
                     f"{_bytes(step['bytes_up'])} up, {_bytes(step['bytes_down'])} down  ")
    if snap.get("quality"):
        quality = snap["quality"]
        lines.append(f"**Quality**: mapped vs native target token agreement {num(quality['token_agreement'])}; "
                     f"perplexity under the target: mapped {num(quality['perplexity_mapped'], '.1f')}, native "
                     f"{num(quality['perplexity_native_target'], '.1f')}")
    return "\n".join(lines)


@_readable_errors
def run_generation(prompt: str, source: str, target: str, encrypted: bool, max_new_tokens: float,
                   progress=gr.Progress()):
    for snap in service.generate(prompt, source, target, encrypted, max_new_tokens, _progress_fn(progress)):
        yield (snap["texts"]["native_source"], snap["texts"]["native_target"], snap["texts"]["mapped"],
               _generation_md(snap), figures.speed_bars({STREAM_NAMES[k]: v for k, v in snap["tokens_per_s"].items()}))


@_readable_errors
def results_frame(task: str, regime: str):
    return service.results_table(task, None if regime == "all" else regime)


def comparison_page(result: dict | None, dataset: str, metric: str, task: str):
    """The figures and tables on screen, as one offline HTML page; returns its path."""
    plots, tables = [similarity_figure(dataset, metric)], []
    intro = "No query has been run in this session yet."
    if result:
        _, probs, latency, steps, _ = show_query(result)
        plots += [probs, latency]
        tables.append(("Protocol steps", steps.to_html(index=False)))
        predictions = ", ".join(f"{PREDICTION_NAMES[k]}: {result[k]['label']}" for k in PREDICTION_NAMES if result[k])
        intro = (f"Query {result['query']!r} — {result['source_name']} (client) → {result['target_name']} "
                 f"(provider), {result['mode']} mode. {predictions}.")
    tables.append((f"Precomputed results: {task}", results_frame(task, "all").to_html(index=False)))
    return service.export_html(figures.report_html("securealign comparison", intro, plots, tables))


@_readable_errors
def export(result: dict | None, dataset: str, metric: str, task: str):
    return gr.File(value=str(comparison_page(result, dataset, metric, task)), visible=True)


# ---- layout ----------------------------------------------------------------------------------------------------

def build() -> gr.Blocks:
    cat = service.catalogue()
    encoders, tasks = cat["encoders"], cat["tasks"]
    first_task = tasks[0][1]
    source, target = encoders[0][1], encoders[1][1]
    with gr.Blocks(title="securealign — secure linear alignment") as demo:
        keys = gr.State(None, time_to_live=3600, delete_callback=service.close_client)
        last_result = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Convergence", id="convergence"):
                gr.Markdown("How alike are the models' representations of the same texts? 1.0 = the same "
                            "geometry up to rotation and scale (CKA), the same neighbours (mutual k-NN) or the same "
                            "correlated directions (SVCCA).")
                with gr.Row():
                    dataset = gr.Dropdown(cat["similarity_datasets"], value=cat["similarity_datasets"][0][1],
                                          label="texts")
                    metric = gr.Dropdown(cat["similarity_metrics"], value=cat["similarity_metrics"][0][1],
                                         label="similarity metric")
                sim_plot = gr.Plot(similarity_figure(dataset.value, metric.value), label="similarity heatmap",
                                   elem_id="similarity-plot")
                gr.Markdown("How well does an affine map carry one model's embeddings into another's? Held out "
                            "test texts; row = client model, column = provider model.")
                with gr.Row():
                    fit_task = gr.Dropdown(tasks, value=first_task, label="task")
                    fit_regime = gr.Dropdown(cat["regimes"], value=cat["demo_regime"], label="map fitted on")
                    fit_measure = gr.Dropdown([(v, k) for k, v in service.FIT_MEASURES.items()], value="retained",
                                              label="measure")
                fit_plot = gr.Plot(fit_figure(first_task, cat["demo_regime"], "retained"), label="fit quality")
                for control in (dataset, metric):
                    control.change(similarity_figure, [dataset, metric], sim_plot, api_visibility="private")
                for control in (fit_task, fit_regime, fit_measure):
                    control.change(fit_figure, [fit_task, fit_regime, fit_measure], fit_plot,
                                   api_visibility="private")

            with gr.Tab("Secure inference", id="inference"):
                with gr.Row():
                    q_source = gr.Dropdown(encoders, value=source, label="client model (source)")
                    q_target = gr.Dropdown(encoders, value=target, label="provider model (target)")
                    q_task = gr.Dropdown(tasks, value=first_task, label="provider's task")
                with gr.Row():
                    q_mode = gr.Radio([("sealed: map and head both on the provider, encrypted", "sealed"),
                                       ("paper: client maps, provider runs the head encrypted", "paper")],
                                      value="sealed", label="protocol mode")
                    q_encrypted = gr.Checkbox(True, label="encrypt (CKKS)")
                q_example = gr.Dropdown(label="pick a held-out example…", choices=[])
                q_text = gr.Textbox(label=f"…or type a query (up to {service.MAX_QUERY_CHARS:,} characters)", lines=3,
                                    elem_id="query-text")
                q_run = gr.Button("Classify", variant="primary", elem_id="classify-button")
                q_summary = gr.Markdown(elem_id="query-summary")
                with gr.Row():
                    q_probs = gr.Plot(label="class probabilities")
                    q_latency = gr.Plot(label="latency")
                q_steps = gr.Dataframe(label="protocol, step by step (real message sizes)", wrap=True,
                                       column_widths=["4%", "9%", "47%", "8%", "10%", "22%"],
                                       elem_id="protocol-steps")
                q_keys = gr.Markdown()
                with gr.Accordion("raw result (what the /classify API returns)", open=False):
                    q_json = gr.JSON()
                q_task.change(example_choices, q_task, q_example, api_visibility="private")
                q_example.change(lambda t: t or gr.skip(), q_example, q_text, api_visibility="private")
                q_run.click(run_query, [q_text, q_source, q_target, q_task, q_mode, q_encrypted, keys],
                            [q_json, last_result, keys], api_name="classify",
                            api_description="Classify a text with the provider's head on the client's mapped "
                                            "embedding, in plaintext and under CKKS encryption; returns JSON.") \
                    .success(show_query, q_json, [q_summary, q_probs, q_latency, q_steps, q_keys],
                             api_visibility="private")

            with gr.Tab("Secure fit", id="fit"):
                gr.Markdown("The map itself can be fitted without either party showing its embeddings: both embed "
                            "the same public texts, and the ridge solution is computed through encrypted "
                            "cross-products. In **paper** mode the client ends up with the map; in **sealed** mode "
                            "only the provider does. Both parties run here, exchanging real ciphertexts.")
                with gr.Row():
                    f_source = gr.Dropdown(encoders, value=source, label="client model (source)")
                    f_target = gr.Dropdown(encoders, value=target, label="provider model (target)")
                    f_texts = gr.Dropdown(list(service.FIT_TEXTS), value=512, label="public texts to fit on")
                with gr.Row():
                    f_mode = gr.Radio([("sealed: the provider gets the map", "sealed"),
                                       ("paper: the client gets the map", "paper")], value="sealed", label="fit mode")
                    f_task = gr.Dropdown(tasks, value=first_task, label="provider's task (to measure the map on)")
                f_run = gr.Button("Fit the map under encryption", variant="primary", elem_id="fit-button")
                f_summary = gr.Markdown(elem_id="fit-summary")
                f_plot = gr.Plot(label="time per party")
                with gr.Accordion("raw result (what the /secure_fit API returns)", open=False):
                    f_json = gr.JSON()
                f_run.click(run_secure_fit, [f_source, f_target, f_mode, f_texts, f_task], [f_json, f_summary, f_plot],
                            api_name="secure_fit", concurrency_limit=1, concurrency_id="secure_fit",
                            api_description="Fit the client's map on public texts under CKKS encryption and "
                                            "compare it with the plaintext ridge fit; returns JSON.")

            with gr.Tab("OOD", id="ood"):
                gr.Markdown("Can the provider's head still tell its own kind of text from unrelated text when it "
                            "reads the client's mapped embeddings? Energy score E = −log Σ exp(logits).")
                with gr.Row():
                    o_task = gr.Dropdown(tasks, value=first_task, label="task (in-distribution)")
                    o_source = gr.Dropdown(encoders, value=source, label="client model")
                    o_target = gr.Dropdown(encoders, value=target, label="provider model")
                o_plot = gr.Plot(ood_figure(first_task, source, target), label="Energy histograms")
                for control in (o_task, o_source, o_target):
                    control.change(ood_figure, [o_task, o_source, o_target], o_plot, api_visibility="private")

            with gr.Tab("Generation", id="generation"):
                gr.Markdown("The source model reads the text; its hidden state goes through the map into the "
                            "target model's LM head, which picks the next token. Greedy, streamed token by token.")
                causal = cat["causal"]
                with gr.Row():
                    # securealign.generation's defaults, spelled out: importing it would load torch at start-up
                    g_source = gr.Dropdown(causal, value="gemma3", label="source LM (reads)")
                    g_target = gr.Dropdown(causal, value="smollm2", label="target LM (its head writes)")
                with gr.Row():
                    g_encrypted = gr.Checkbox(False, label="encrypt the vocabulary head (slow: ~1 s per token into "
                                              "SmolLM2's 49k vocabulary, ~3 s into Gemma 3's 262k)")
                    g_tokens = gr.Slider(1, service.MAX_APP_NEW_TOKENS, value=12, step=1, label="new tokens")
                g_prompt = gr.Textbox("The capital of France is", label=f"prompt (up to {service.MAX_PROMPT_CHARS} "
                                      "characters)", elem_id="gen-prompt")
                g_run = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Row():
                    g_src = gr.Textbox(label=STREAM_NAMES["native_source"], lines=4, elem_id="gen-native-source")
                    g_tgt = gr.Textbox(label=STREAM_NAMES["native_target"], lines=4, elem_id="gen-native-target")
                    g_map = gr.Textbox(label=STREAM_NAMES["mapped"], lines=4, elem_id="gen-mapped")
                g_metrics = gr.Markdown()
                g_speed = gr.Plot(label="speed")
                g_run.click(run_generation, [g_prompt, g_source, g_target, g_encrypted, g_tokens],
                            [g_src, g_tgt, g_map, g_metrics, g_speed], api_name="generate",
                            concurrency_limit=1, concurrency_id="generation")

            with gr.Tab("Results", id="results"):
                with gr.Row():
                    r_task = gr.Dropdown(tasks, value=first_task, label="task")
                    r_regime = gr.Dropdown([("all", "all"), *cat["regimes"]], value="all", label="map fitted on")
                r_table = gr.Dataframe(results_frame(first_task, "all"), label="precomputed results "
                                       f"({cat['created']}); click a column to sort", wrap=True)
                for control in (r_task, r_regime):
                    control.change(results_frame, [r_task, r_regime], r_table, api_visibility="private")
                gr.Markdown("Export the current comparison (last query, the selected heatmap, this task's table) as "
                            "one self-contained HTML page that opens offline, for slides.")
                r_export = gr.Button("Export comparison (HTML)")
                r_file = gr.File(label="exported page", visible=False)
                r_export.click(export, [last_result, dataset, metric, r_task], r_file, api_visibility="private")

            with gr.Tab("What is protected", id="protected"):
                gr.Markdown(_threat_md())
        demo.load(example_choices, q_task, q_example, api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


if __name__ == "__main__":
    build().launch(theme=gr.themes.Soft())
