"""securealign's demo: the story in five steps, then each step in detail (models converge, a map carries one model
into another, an encrypted query gives the plaintext answer, what each party sees, one model writes with another's
head).

Started by ``scripts/demo.sh`` and by the Hugging Face Space (``Dockerfile``); host and port come from
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``. This file only lays out widgets and wires them to
:mod:`securealign.app_support.service` (numbers), :mod:`securealign.app_support.figures` (plots) and
:mod:`app_text` (words): the first page is drawn from the precomputed ``assets/`` alone, and the default pair's
models warm up in the background while the page is built and served.

Public API (``gradio_client``): ``/classify`` takes (text, client model, provider model, task, mode, encrypted)
and returns the comparison as JSON; ``/secure_fit`` (client model, provider model, mode, public texts, task) fits a
map under encryption; ``/generate`` streams cross-model text. See docs/app.md.
"""

from __future__ import annotations

import functools
import inspect
import threading

from securealign.app_support import encoder_process

if __name__ == "__main__":
    # before anything heavy: the query encoders import torch and load in a process of their own, on the second
    # core, while this one imports Gradio and draws the first page (encoder_process says why a thread would not do)
    encoder_process.start()

import gradio as gr  # noqa: E402 - after the encoders' process has started

import app_text as words  # noqa: E402
from securealign.app_support import figures, service  # noqa: E402
from securealign.crypto import THREAT_MODELS  # noqa: E402

# The three API events take their arguments unconverted (preprocess=False): the service checks every one of them
# before any work starts, so "abc" or 2.5 from an API client gets the service's sentence, not a slider's error.
API_EVENT = {"preprocess": False}
CONCURRENCY = 2  # two CPU cores on a Space: more parallel queries would only queue inside numpy and SEAL
QUEUE_SIZE = 32
# the story's pair is every tab's default; the weaker-client pairs (e.g. MiniLM -> mpnet on Rotten Tomatoes, where
# the mapped answer to the first example differs from mpnet's own) stay one click away
DEFAULT_TASK, DEFAULT_CLIENT, DEFAULT_PROVIDER = service.STORY_TASK, service.STORY_CLIENT, service.STORY_PROVIDER
CSS = """
.headline, .headline p, .headline h3 {font-size: 1.3rem !important; line-height: 1.45 !important}
.step-button {font-size: 1.1rem !important}
td, th, td *, th * {word-break: normal !important; overflow-wrap: normal !important; hyphens: manual !important}
.prose table {display: block; overflow-x: auto; max-width: 100%}
code {word-break: keep-all !important; white-space: nowrap}
@media (max-width: 600px) {
  h1 {font-size: 1.35rem !important}
  .headline, .headline p, .headline h3 {font-size: 1.1rem !important}
}
"""
INTRO = """# securealign: one model's task head, served to another model's embeddings, under encryption
Independently trained models learn **linearly compatible** representations. A client maps its embedding into a
provider's space with an affine map, and the provider's head classifies it **without seeing the query** (CKKS
homomorphic encryption). Real models, real data, real encryption."""


def _readable_errors(fn):
    """Show refusals (bad input, unknown names, missing assets, models that fail to load) as a message, never a
    traceback (the three API events use :func:`_refusal_beside`, which also keeps the last result)."""

    if inspect.isgeneratorfunction(fn):  # a streaming callback fails while it is iterated, not when it is called

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (ValueError, FileNotFoundError) as exc:
                raise gr.Error(str(exc), print_exception=False) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper


def _refusal_beside(n_outputs: int):
    """For an event whose outputs end with an error-message State: on success that message is cleared; on a
    refusal every other output keeps its last good value, the sentence goes to the State (shown beside the
    button) and is raised as well (the toast, and the API client's AppError)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                outputs = fn(*args, **kwargs)
                for out in outputs if inspect.isgenerator(outputs) else [outputs]:
                    yield (*out, "")
            except (ValueError, FileNotFoundError) as exc:
                yield (*(gr.skip(),) * n_outputs, str(exc))
                raise gr.Error(str(exc), print_exception=False) from exc

        return wrapper

    return decorate


def _run_row(label: str, elem_id: str) -> tuple[gr.Button, gr.Markdown, gr.State]:
    """An action button with its progress beside it and, after a refusal, the message next to it."""
    error = gr.State("")
    with gr.Row(equal_height=True):
        button = gr.Button(label, variant="primary", elem_id=f"{elem_id}-button", scale=2)
        status = gr.Markdown(elem_id=f"{elem_id}-status", container=False)
        message = gr.Markdown(elem_id=f"{elem_id}-error", container=False)
    error.change(lambda m: f"⚠ {m}" if m else "", error, message, api_visibility="private", show_progress="hidden")
    return button, status, error


def _progress_fn(progress: gr.Progress):
    return lambda fraction, what: progress(fraction, desc=what)


# ---- callbacks: convergence ------------------------------------------------------------------------------------


@_readable_errors
def similarity_view(dataset: str, metric: str):
    sim = service.similarity(dataset, metric)
    fig = figures.heatmap(
        sim["matrix"],
        sim["labels"],
        sim["labels"],
        value_name=sim["metric_label"],
        title=f"{sim['metric_label']}, {sim['n_texts']:,} texts",
    )
    return fig, f"{words.explain(sim['metric_label'])} Texts: {sim['dataset_label']}."


@_readable_errors
def fit_view(task: str, regime: str, measure: str):
    fit = service.map_quality_matrix(task, regime, measure)
    name = words.MEASURE_NAMES[measure]
    percent = measure in ("mapped_acc", "top1", "retained")
    fig = figures.heatmap(
        fit["matrix"],
        fit["labels"],
        fit["labels"],
        value_name=name,
        percent=percent,
        zrange=(0.0, 1.1 if measure == "retained" else 1.0),
        row_axis="client (source)",
        col_axis="provider (target)",
        title=name,
    )
    return fig, words.fit_caption(fit["matrix"], measure)


# ---- callbacks: the guided story --------------------------------------------------------------------------------


@_readable_errors
def story_agree():
    pair = service.pair_summary(DEFAULT_TASK, DEFAULT_CLIENT, DEFAULT_PROVIDER)
    names = service.model_name(DEFAULT_CLIENT), service.model_name(DEFAULT_PROVIDER)
    return words.story_agree(pair, *names), similarity_view("public", "cka")[0]


@_readable_errors
def story_map():
    pair = service.pair_summary(DEFAULT_TASK, DEFAULT_CLIENT, DEFAULT_PROVIDER)
    client, provider = service.model_name(DEFAULT_CLIENT), service.model_name(DEFAULT_PROVIDER)
    fig = figures.accuracy_bars(
        {
            f"{client} alone (its own head)": pair["source_acc"],
            f"{provider} alone": pair["provider_acc"],
            f"{client} → map → {provider}'s head": pair["mapped_acc"],
        },
        title=f"Accuracy on {pair['task_title']}",
    )
    return words.story_map(pair, client, provider), fig


@_readable_errors
def story_query(client, progress=gr.Progress()):
    text = service.examples(DEFAULT_TASK)[0]
    result, client = service.classify(
        text, DEFAULT_CLIENT, DEFAULT_PROVIDER, DEFAULT_TASK, "sealed", True, client, _progress_fn(progress)
    )
    latency = figures.latency_bars(result["timings_ms"], title="The client's wall clock")
    return words.query_headline(result), gr.Plot(latency, visible=True), result, client


def story_parties(result: dict | None):
    return words.who_sees_what(result, THREAT_MODELS)


@_readable_errors
def story_generation(pair: str, prompt: str, progress=gr.Progress()):
    """The fifth step, streamed: four continuations with the agreeing tokens marked, each stream's time per token,
    the verdict once the plaintext streams end, and both story pairs' measured figures."""
    for snap in service.story_generate(pair, prompt, _progress_fn(progress)):
        shown = {words.STORY_STREAMS[n]: ms for n, ms in snap["token_ms"].items() if ms}
        latency = figures.token_latency(shown, title="Each stream's own time per token")
        yield (
            words.generation_verdict(snap),
            *(words.marked_tokens(snap["tokens"][n], snap["agrees"].get(n)) for n in list(words.STORY_STREAMS)[:-1]),
            gr.HighlightedText(
                words.marked_tokens(snap["tokens"]["mapped_encrypted"], snap["agrees"].get("mapped_encrypted")),
                label=words.encrypted_stream_label(snap),
            ),
            # redrawn when a slow encrypted token lands or the plaintext streams end, not at every fast token
            gr.Plot(latency, visible=True) if "verdict" in snap else gr.skip(),
            words.story_streams_md(snap),
            words.story_pairs_md(service.story_pairs(), snap),
        )


# ---- callbacks: secure inference -------------------------------------------------------------------------------


@_readable_errors
def example_choices(task: str):
    """Held-out examples labelled with their true class; the first one is selected, so one click classifies."""
    texts = service.examples(task)
    choices = [(f"[{service.true_label(task, t)}] " + (t if len(t) <= 80 else t[:77] + "…"), t) for t in texts]
    return gr.Dropdown(choices=choices, value=texts[0]), texts[0]


@_refusal_beside(3)
def run_query(
    text: str,
    source: str,
    target: str,
    task: str,
    mode: str,
    encrypted: bool,
    answer: str,
    client,
    progress=gr.Progress(),
):
    """Classify one text: the client's path first (shown at once), then the provider's own model on the raw text
    as a reference, off the client's path; the API returns the final, complete comparison as JSON."""
    result, client = service.classify(
        text, source, target, task, mode, encrypted, client, _progress_fn(progress), answer
    )
    yield result, result, client
    result = service.add_reference(result)
    yield result, result, client


def _query_figures(result: dict):
    series = {
        name: [result[k]["probabilities"][c] for c in result["classes"]]
        for k, name in words.PATH_NAMES.items()
        if result[k] is not None and result[k]["probabilities"]
    }
    return (
        figures.probability_bars(result["classes"], series),
        figures.latency_bars(
            result["timings_ms"], title="The client's wall clock", reference_ms=result["reference_ms"]
        ),
    )


def show_query(result: dict | None):
    if not result:
        return (gr.skip(),) * 6
    probs, latency = _query_figures(result)
    return (
        words.query_headline(result),
        words.query_summary(result),
        gr.Plot(probs, visible=True),
        gr.Plot(latency, visible=True),
        words.protocol_md(result),
        words.keys_md(result),
    )


# ---- callbacks: secure fit, OOD, generation, results -----------------------------------------------------------


@_readable_errors
def fit_sizes(source: str, target: str, mode: str):
    """The sizes this pair and mode may use, the fewest (and fastest) selected."""
    choices = service.secure_fit_choices(source, target, mode)
    return gr.Dropdown(choices=choices, value=choices[0])


@_readable_errors
def fit_estimate(n_texts: int, task: str):
    return words.fit_estimate(n_texts, service.secure_fit_estimate(n_texts, task))


@_refusal_beside(3)
def run_secure_fit(source: str, target: str, mode: str, n_texts: int, task: str, progress=gr.Progress(track_tqdm=True)):
    """Fit the client's map on public texts under encryption, compare it with the plaintext fit and measure the
    provider's task head through it (JSON)."""
    result = service.secure_fit(source, target, mode, n_texts, task, _progress_fn(progress))
    parts = {**result["party_ms"], "overhead": max(0.0, result["secure_ms"] - sum(result["party_ms"].values()))}
    chart = figures.latency_bars(
        parts,
        title="Encrypted fit, wall clock",  # the parts add up to secure_ms
        reference_ms={"plaintext ridge": result["plaintext_ms"]},
    )
    return result, words.fit_md(result), gr.Plot(chart, visible=True)


@_readable_errors
def ood_view(task: str, source: str, target: str):
    ood = service.ood_comparison(task, source, target)
    fig = figures.energy_histograms(
        ood["scores"], ood["metrics"], in_name=f"in: {ood['in_name']}", out_name=f"out: {ood['out_name']}"
    )
    return fig, words.ood_caption(ood["metrics"])


@_refusal_beside(5)
def run_generation(prompt: str, source: str, target: str, encrypted: bool, max_new_tokens: int, progress=gr.Progress()):
    for snap in service.generate(prompt, source, target, encrypted, max_new_tokens, _progress_fn(progress)):
        yield (
            snap["texts"]["native_source"],
            snap["texts"]["native_target"],
            snap["texts"]["mapped"],
            words.generation_md(snap),
            gr.Plot(
                figures.speed_bars({words.STREAM_NAMES[k]: v for k, v in snap["tokens_per_s"].items()}), visible=True
            ),
        )


@_readable_errors
def generation_estimate(target: str, encrypted: bool, max_new_tokens: int):
    return words.generation_estimate(
        service.model_name(target), encrypted, max_new_tokens, service.encrypted_seconds_per_token(target)
    )


@_readable_errors
def results_frame(task: str, regime: str):
    return service.results_table(task, None if regime == "all" else regime)


def comparison_page(result: dict | None, dataset: str, metric: str, task: str, regime: str):
    """The page's current selections (heatmap texts and metric, results task and regime) and the last query, as
    one offline HTML page with a headline verdict; returns its path."""
    plots = {f"similarity-{dataset}-{metric}": similarity_view(dataset, metric)[0]}
    if regime != "all":
        plots[f"mapped-accuracy-{task}-{regime}"] = fit_view(task, regime, "mapped_acc")[0]
    tables, verdict, intro = [], "No query has been run in this session yet.", ""
    if result:
        verdict = words.plain(words.query_headline(result))
        probs, latency = _query_figures(result)
        plots |= {"class-probabilities": probs, "client-wall-clock": latency}
        tables.append(("The protocol, step by step", words.protocol_frame(result).to_html(index=False)))
        intro = (
            f"Query {result['query']!r}: {result['source_name']} (client) → {result['target_name']} "
            f"(provider), {result['mode']} mode."
        )
    frame = results_frame(task, regime)
    task_title = {t: title for title, t in service.catalogue()["tasks"]}[task]
    regime_name = "all maps" if regime == "all" else f"map fitted on {service.REGIME_SHORT.get(regime, regime)}"
    tables.append(
        (
            f"Precomputed results: {task_title}, {regime_name} ({len(frame)} rows)",
            frame.to_html(index=False, float_format=lambda v: f"{v:g}"),
        )
    )
    return service.export_html(figures.report_html("securealign comparison", verdict, intro, plots, tables))


@_readable_errors
def export(result: dict | None, dataset: str, metric: str, task: str, regime: str):
    return gr.File(value=str(comparison_page(result, dataset, metric, task, regime)), visible=True)


def show_tab(tab_id: str):
    return lambda: gr.Tabs(selected=tab_id)


# ---- layout: one builder per tab -------------------------------------------------------------------------------


def _scroll_to(elem_id: str) -> dict:
    """Event arguments that bring an answer into view once it is drawn (on a projector or a phone the result of a
    click would otherwise land below the fold); runs in the browser only."""
    return {
        "fn": None,
        "js": f"() => document.getElementById('{elem_id}').scrollIntoView({{block: 'start'}})",
        "api_visibility": "private",
    }


def _details_button(tabs: gr.Tabs, tab_id: str, what: str) -> None:
    gr.Button(f"Details: {what} →", size="sm", variant="secondary").click(
        show_tab(tab_id), None, tabs, api_visibility="private"
    )


def _story_tab(tabs: gr.Tabs, keys: gr.State) -> None:
    gr.Markdown(
        "## The story in five steps\nOne click per step; each step's details are one more click away.",
        elem_classes="headline",
    )
    example = service.examples(DEFAULT_TASK)[0]
    steps = (
        ("1 · Do two independently trained models agree?", "convergence", "similarity between all models", True),
        ("2 · Does a map carry one model into the other?", "results", "accuracy of every pair", True),
        (
            f"3 · Encrypt a query: does the provider give the plaintext answer? (“{example[:70]}…”)",
            "inference",
            "secure inference",
            True,
        ),
        ("4 · Who sees what?", "protected", "what is protected", False),
    )
    outputs = []
    for number, (label, tab_id, what, has_plot) in enumerate(steps, start=1):
        with gr.Group():
            button = gr.Button(label, variant="primary", elem_id=f"story-step-{number}", elem_classes="step-button")
            text = gr.Markdown(elem_id=f"story-text-{number}", elem_classes="headline")
            plot = gr.Plot(visible=False, show_label=False) if has_plot else None
            _details_button(tabs, tab_id, what)
        outputs.append((button, text, plot))
    (b1, t1, p1), (b2, t2, p2), (b3, t3, p3), (b4, t4, _) = outputs
    story_result = gr.State(None)  # the story's own query, so that its result never scrolls another tab
    b1.click(_visible_plot(story_agree), None, [t1, p1], api_visibility="private").then(**_scroll_to(t1.elem_id))
    b2.click(_visible_plot(story_map), None, [t2, p2], api_visibility="private").then(**_scroll_to(t2.elem_id))
    b3.click(story_query, keys, [t3, p3, story_result, keys], api_visibility="private", show_progress_on=t3).then(
        **_scroll_to(t3.elem_id)
    )
    b4.click(story_parties, story_result, t4, api_visibility="private").then(**_scroll_to(t4.elem_id))
    b4.click(service.warm_story_pair, api_visibility="private", show_progress="hidden")  # step 5 is next
    _story_generation_step(tabs)


def _story_generation_step(tabs: gr.Tabs) -> None:
    """Step 5: can one model write with another's head? The pair that works beside the one that drifts, one switch
    apart; four continuations side by side, streamed."""
    pairs = [
        (words.story_pair_label(service.model_name(s), service.model_name(t)), service.story_pair_key(s, t))
        for s, t in service.STORY_PAIRS
    ]
    with gr.Group():
        button = gr.Button(
            "5 · Can one model write with another's head?",
            variant="primary",
            elem_id="story-step-5",
            elem_classes="step-button",
        )
        with gr.Row():
            pair = gr.Radio(pairs, value=pairs[0][1], label="pair", elem_id="story-gen-pair", scale=2)
            prompt = gr.Textbox(
                service.STORY_PROMPT,
                label=f"prompt (held out from every map's texts; {service.STORY_NEW_TOKENS} new tokens per stream)",
                elem_id="story-gen-prompt",
                scale=3,
            )
        verdict = gr.Markdown(elem_id="story-text-5", elem_classes="headline")
        with gr.Row():
            streams = [
                gr.HighlightedText(
                    label=label,
                    elem_id=f"story-gen-{name.replace('_', '-')}",
                    color_map={words.AGREES: "green"},
                    show_legend=name.startswith("mapped"),
                    combine_adjacent=False,
                    min_width=220,
                )
                for name, label in words.STORY_STREAMS.items()
            ]
        latency = gr.Plot(visible=False, show_label=False, elem_id="story-gen-latency")
        timings = gr.Markdown(elem_id="story-gen-timings")
        measured = gr.Markdown(elem_id="story-gen-pairs")
        _details_button(tabs, "generation", "generation with any pair")
    button.click(**_scroll_to(verdict.elem_id))
    button.click(
        story_generation,
        [pair, prompt],
        [verdict, *streams, latency, timings, measured],
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="generation",
        show_progress_on=verdict,
    ).then(**_scroll_to(verdict.elem_id))  # the verdict again at the end: on a phone the streams push it away


def _visible_plot(fn):
    """A story step's callback whose plot frame appears only once it has something to show."""

    @functools.wraps(fn)
    def wrapper():
        text, fig = fn()
        return text, gr.Plot(fig, visible=True)

    return wrapper


def _convergence_tab(cat: dict) -> tuple[gr.Dropdown, gr.Dropdown]:
    gr.Markdown("How alike are the models' representations of the same texts?")
    with gr.Row():
        dataset = gr.Dropdown(cat["similarity_datasets"], value="public", label="texts")
        metric = gr.Dropdown(cat["similarity_metrics"], value="cka", label="similarity metric")
    fig, caption = similarity_view(dataset.value, metric.value)
    sim_plot = gr.Plot(fig, show_label=False, elem_id="similarity-plot")
    sim_caption = gr.Markdown(caption)
    gr.Markdown(
        "How well does an affine map carry one model's embeddings into another's? Held-out test texts; "
        "row = client model, column = provider model."
    )
    with gr.Row():
        task = gr.Dropdown(cat["tasks"], value=DEFAULT_TASK, label="task")
        regime = gr.Dropdown(cat["regimes"], value=cat["demo_regime"], label="map fitted on")
        measure = gr.Dropdown(
            [(words.MEASURE_NAMES[k], k) for k in service.FIT_MEASURES], value="mapped_acc", label="measure"
        )
    fig, caption = fit_view(DEFAULT_TASK, cat["demo_regime"], "mapped_acc")
    fit_plot = gr.Plot(fig, show_label=False, elem_id="fit-plot")
    fit_caption = gr.Markdown(caption)
    for control in (dataset, metric):
        control.change(similarity_view, [dataset, metric], [sim_plot, sim_caption], api_visibility="private")
    for control in (task, regime, measure):
        control.change(fit_view, [task, regime, measure], [fit_plot, fit_caption], api_visibility="private")
    return dataset, metric


def _inference_tab(cat: dict, keys: gr.State, last_result: gr.State) -> tuple[gr.Dropdown, gr.Dropdown, gr.Textbox]:
    with gr.Row():
        source = gr.Dropdown(cat["encoders"], value=DEFAULT_CLIENT, label="client model (source)")
        target = gr.Dropdown(cat["encoders"], value=DEFAULT_PROVIDER, label="provider model (target)")
        task = gr.Dropdown(cat["tasks"], value=DEFAULT_TASK, label="provider's task")
    with gr.Row():
        mode = gr.Radio(
            [
                ("sealed: map and head both on the provider, encrypted", "sealed"),
                ("paper: client maps, provider runs the head encrypted", "paper"),
            ],
            value="sealed",
            label="protocol mode",
        )
        encrypted = gr.Checkbox(
            True, label="encrypt (CKKS)", info="off: see what the provider would receive in the clear"
        )
        answer = gr.Radio(
            [("logits", "logits"), ("label only", "label")],
            value="logits",
            label="answer",
            info="label only: the client learns the class and no logits, so it cannot solve for the provider's head",
        )
    example = gr.Dropdown(label="pick a held-out example ([true label] text)…", choices=[])
    text = gr.Textbox(
        label=f"…or type a query (up to {service.MAX_QUERY_CHARS:,} characters)", lines=3, elem_id="query-text"
    )
    run, status, error = _run_row("Classify", "classify")
    headline = gr.Markdown(elem_id="query-headline", elem_classes="headline")
    summary = gr.Markdown(elem_id="query-summary")
    with gr.Row():
        probs = gr.Plot(visible=False, show_label=False, elem_id="query-probabilities")
        latency = gr.Plot(visible=False, show_label=False, elem_id="query-latency")
    steps = gr.Markdown(elem_id="protocol-steps")
    keys_md = gr.Markdown()
    with gr.Accordion("raw result (what the /classify API returns)", open=False):
        raw = gr.JSON()
    task.change(example_choices, task, [example, text], api_visibility="private")
    example.input(lambda t: t or gr.skip(), example, text, api_visibility="private")
    run.click(
        run_query,
        [text, source, target, task, mode, encrypted, answer, keys],
        [raw, last_result, keys, error],
        api_name="classify",
        show_progress_on=status,
        **API_EVENT,
        api_description="Classify a text with the provider's head on the client's mapped embedding, in "
        "plaintext and under CKKS encryption; returns JSON.",
    )
    last_result.change(
        show_query,
        last_result,
        [headline, summary, probs, latency, steps, keys_md],
        api_visibility="private",
        show_progress="hidden",
    ).then(**_scroll_to("query-headline"))
    return task, example, text


def _fit_tab(cat: dict) -> None:
    gr.Markdown(
        "The map itself can be fitted without either party showing its embeddings: both embed the same "
        "public texts, and the ridge solution is computed through encrypted cross-products. In **paper** "
        "mode the client ends up with the map; in **sealed** mode only the provider does."
    )
    with gr.Row():
        source = gr.Dropdown(cat["encoders"], value=DEFAULT_CLIENT, label="client model (source)")
        target = gr.Dropdown(cat["encoders"], value="wordllama", label="provider model (target)")
        sizes = service.secure_fit_choices(DEFAULT_CLIENT, "wordllama", "sealed")
        n_texts = gr.Dropdown(
            sizes,
            value=sizes[0],
            label="public texts to fit on",
            info="at least twice the decrypting party's columns, so it cannot solve for the other's embeddings",
        )
    with gr.Row():
        mode = gr.Radio(
            [("sealed: the provider gets the map", "sealed"), ("paper: the client gets the map", "paper")],
            value="sealed",
            label="fit mode",
        )
        task = gr.Dropdown(cat["tasks"], value=DEFAULT_TASK, label="provider's task (to measure the map on)")
    estimate = gr.Markdown(fit_estimate(sizes[0], DEFAULT_TASK), elem_id="fit-estimate")
    run, status, error = _run_row("Fit the map under encryption", "fit")
    summary = gr.Markdown(elem_id="fit-summary")
    plot = gr.Plot(show_label=False, elem_id="fit-plot-time", visible=False)  # no empty frame before a fit
    with gr.Accordion("raw result (what the /secure_fit API returns)", open=False):
        raw = gr.JSON()
    for control in (source, target, mode):
        control.change(fit_sizes, [source, target, mode], n_texts, api_visibility="private")
    for control in (n_texts, task):
        control.change(fit_estimate, [n_texts, task], estimate, api_visibility="private")
    run.click(
        run_secure_fit,
        [source, target, mode, n_texts, task],
        [raw, summary, plot, error],
        api_name="secure_fit",
        concurrency_limit=1,
        concurrency_id="secure_fit",
        show_progress_on=status,
        **API_EVENT,
        api_description="Fit the client's map on public texts under CKKS encryption and compare "
        "it with the plaintext ridge fit; returns JSON.",
    ).success(**_scroll_to(summary.elem_id))


def _ood_tab(cat: dict) -> None:
    gr.Markdown(
        "Can the provider's head still tell its own kind of text from unrelated text when it reads the "
        "client's mapped embeddings?"
    )
    with gr.Row():
        task = gr.Dropdown(cat["tasks"], value=DEFAULT_TASK, label="task (in-distribution)")
        source = gr.Dropdown(cat["encoders"], value=DEFAULT_CLIENT, label="client model")
        target = gr.Dropdown(cat["encoders"], value=DEFAULT_PROVIDER, label="provider model")
    fig, caption = ood_view(DEFAULT_TASK, DEFAULT_CLIENT, DEFAULT_PROVIDER)
    plot = gr.Plot(fig, show_label=False, elem_id="ood-plot")
    text = gr.Markdown(caption, elem_id="ood-caption")
    for control in (task, source, target):
        control.change(ood_view, [task, source, target], [plot, text], api_visibility="private")


def _generation_tab(cat: dict) -> None:
    gr.Markdown(
        "The source model reads the text; its hidden state goes through the map into the target model's "
        "LM head, which picks the next token. Greedy, streamed token by token."
    )
    with gr.Row():
        # securealign.generation's defaults, spelled out: importing it would load torch at start-up
        source = gr.Dropdown(cat["causal"], value="gemma3", label="source LM (reads)")
        target = gr.Dropdown(cat["causal"], value="smollm2", label="target LM (its head writes)")
    with gr.Row():
        encrypted = gr.Checkbox(False, label="encrypt the vocabulary head")
        tokens = gr.Slider(1, service.MAX_APP_NEW_TOKENS, value=12, step=1, label="new tokens")
    estimate = gr.Markdown(generation_estimate("smollm2", False, 12), elem_id="gen-estimate")
    prompt = gr.Textbox(
        "The capital of France is", label=f"prompt (up to {service.MAX_PROMPT_CHARS} characters)", elem_id="gen-prompt"
    )
    run, status, error = _run_row("Generate", "generate")
    with gr.Row():
        src = gr.Textbox(label=words.STREAM_NAMES["native_source"], lines=4, elem_id="gen-native-source")
        tgt = gr.Textbox(label=words.STREAM_NAMES["native_target"], lines=4, elem_id="gen-native-target")
        mapped = gr.Textbox(label=words.STREAM_NAMES["mapped"], lines=4, elem_id="gen-mapped")
    metrics = gr.Markdown(elem_id="gen-metrics")
    speed = gr.Plot(show_label=False, visible=False)
    for control in (target, encrypted, tokens):
        control.change(generation_estimate, [target, encrypted, tokens], estimate, api_visibility="private")
    run.click(
        run_generation,
        [prompt, source, target, encrypted, tokens],
        [src, tgt, mapped, metrics, speed, error],
        api_name="generate",
        concurrency_limit=1,
        concurrency_id="generation",
        show_progress_on=status,
        **API_EVENT,
    )


def _results_tab(cat: dict, last_result: gr.State, selections: tuple[gr.Dropdown, gr.Dropdown]) -> None:
    with gr.Row():
        task = gr.Dropdown(cat["tasks"], value=DEFAULT_TASK, label="task")
        regime = gr.Dropdown([("all", "all"), *cat["regimes"]], value=cat["demo_regime"], label="map fitted on")
    table = gr.Dataframe(
        results_frame(DEFAULT_TASK, cat["demo_regime"]),
        wrap=True,
        elem_id="results-table",
        label=f"precomputed results ({cat['created']}); click a column to sort",
    )
    gr.Markdown(" ".join(words.explain(term) for term in ("accuracy", "McNemar p", "R²", "AUROC")))
    for control in (task, regime):
        control.change(results_frame, [task, regime], table, api_visibility="private")
    gr.Markdown(
        "Export what is selected (this task and map regime, the Convergence tab's texts and metric, and "
        "this session's last query) as one self-contained HTML page that opens offline, for slides; each "
        "figure's camera button saves it as PNG."
    )
    button = gr.Button("Export comparison (HTML)")
    file = gr.File(label="exported page", visible=False)
    button.click(export, [last_result, *selections, task, regime], file, api_visibility="private")


def _protected_tab() -> None:
    gr.Markdown(words.threat_md(THREAT_MODELS) + "\n\n" + words.glossary_md())


def build() -> gr.Blocks:
    cat = service.catalogue()
    with gr.Blocks(title="securealign: secure linear alignment") as demo:
        keys = gr.State(None, time_to_live=3600, delete_callback=service.close_client)
        last_result = gr.State(None)
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("The story", id="story"):
                _story_tab(tabs, keys)
            with gr.Tab("Convergence", id="convergence"):
                selections = _convergence_tab(cat)
            with gr.Tab("Secure inference", id="inference"):
                query_inputs = _inference_tab(cat, keys, last_result)
            with gr.Tab("Secure fit", id="fit"):
                _fit_tab(cat)
            with gr.Tab("OOD", id="ood"):
                _ood_tab(cat)
            with gr.Tab("Generation", id="generation"):
                _generation_tab(cat)
            with gr.Tab("Results", id="results"):
                _results_tab(cat, last_result, selections)
            with gr.Tab("What is protected", id="protected"):
                _protected_tab()
        task, example, text = query_inputs
        demo.load(example_choices, task, [example, text], api_visibility="private")
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def main() -> None:
    """Warm the story's models in the background while the page is built and served, so the first query is as
    quick as later ones and the page itself never waits for a model."""
    threading.Thread(
        target=service.warm_up, args=(DEFAULT_TASK, DEFAULT_CLIENT, DEFAULT_PROVIDER), daemon=True, name="warm-up"
    ).start()
    demo = build()
    demo.launch(theme=gr.themes.Soft(), css=CSS, prevent_thread_lock=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
