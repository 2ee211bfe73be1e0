"""Plotly figures for the demo and the slide export: pure functions of arrays and dicts, no model or file access.

Every figure carries its numbers in the hover text and, where they fit, on the figure itself, so a screenshot
of the page reads without the mouse.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# One colour per variant, the same in every figure of a comparison (keys: the page's path names).
VARIANT_COLOURS = {
    "provider's own model": "#4C72B0",
    "same, in plaintext": "#DD8452",
    "encrypted (client → provider)": "#55A868",
}
PART_COLOURS = {
    "embedding": "#8172B3",
    "map": "#CCB974",
    "key generation (once)": "#999999",
    "send public keys (once)": "#BBBBBB",
    "encrypt": "#55A868",
    "provider": "#C44E52",
    "decrypt": "#64B5CD",
    "loading and overhead": "#DDDDDD",
    "client": "#4C72B0",
    "plaintext ridge": "#DD8452",
}
STREAM_COLOURS = ["#4C72B0", "#8172B3", "#DD8452", "#55A868"]  # the story's four continuations, in page order
REFERENCE_COLOUR = "#E0E0E0"  # bars that are shown for scale and not counted in a total
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), font=dict(size=13), autosize=True)


def heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    value_name: str,
    row_axis: str = "",
    col_axis: str = "",
    zrange: tuple[float, float] = (0.0, 1.0),
    percent: bool = False,
) -> go.Figure:
    """A labelled heatmap with each cell's value written in it; missing values (NaN/None) stay blank.

    The colour scale is fixed (``zrange``, 0-1 by default) rather than stretched to the data, so the same colour
    means the same value in every view: a weak 0.29 never shows as the brightest cell.
    """
    z = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fmt = ".0%" if percent else ".2f"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(col_labels),
            y=list(row_labels),
            colorscale="Viridis",
            zmin=zrange[0],
            zmax=zrange[1],
            texttemplate=f"%{{z:{fmt}}}",
            textfont=dict(size=11),
            # below the matrix rather than beside it: on a phone every pixel of width goes to the cells
            colorbar=dict(
                title=dict(text=value_name, side="top"),
                tickformat=".0%" if percent else None,
                orientation="h",
                y=-0.25,
                yanchor="top",
                thickness=12,
                len=0.9,
            ),
            hovertemplate=f"{row_axis or 'row'}: %{{y}}<br>{col_axis or 'column'}: %{{x}}<br>"
            f"{value_name}: %{{z:{'.1%' if percent else '.3f'}}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title, **{**_LAYOUT, "margin": dict(l=10, r=10, t=50, b=100)}, height=max(420, 60 * len(row_labels) + 220)
    )
    fig.update_xaxes(title=col_axis, tickangle=-30, side="bottom")
    fig.update_yaxes(title=row_axis, autorange="reversed")
    return fig


def probability_bars(
    classes: Sequence[str], variants: Mapping[str, Sequence[float]], *, title: str = "Class probabilities"
) -> go.Figure:
    """Grouped horizontal bars: one group per class, one bar per variant (native, mapped, encrypted)."""
    fig = go.Figure()
    for name, probs in variants.items():
        probs = np.asarray(probs, dtype=float)
        fig.add_trace(
            go.Bar(
                y=list(classes),
                x=probs,
                name=name,
                orientation="h",
                marker_color=VARIANT_COLOURS.get(name),
                text=[f"{p:.1%}" for p in probs],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"{name}<br>%{{y}}: %{{x:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        **_LAYOUT,
        height=140 + 32 * len(classes) * max(1, len(variants)),
        legend=dict(orientation="h", y=-0.15),
        xaxis=dict(range=[0, 1.15], tickformat=".0%"),
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def latency_bars(
    timings_ms: Mapping[str, float],
    *,
    title: str = "Where the time goes",
    reference_ms: Mapping[str, float] | None = None,
) -> go.Figure:
    """One horizontal bar per part of the wait, in protocol order, each labelled with its duration; the title
    gives their total, the wall clock. ``reference_ms`` bars (grey, marked) are shown for scale and left out of
    the total, because they are not part of the wait.

    Separate bars rather than one stacked bar: the encrypted parts take a few ms beside embedding's hundreds,
    and a stacked segment that thin cannot carry its label.
    """
    reference = dict(reference_ms or {})
    parts = list(timings_ms) + list(reference)
    values = [float(v) for v in timings_ms.values()] + [float(v) for v in reference.values()]
    colours = [PART_COLOURS.get(p, "#888888") for p in timings_ms] + [REFERENCE_COLOUR] * len(reference)
    fig = go.Figure(
        go.Bar(
            y=parts,
            x=values,
            orientation="h",
            marker_color=colours,
            text=[_duration(v) for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.2f} ms<extra></extra>",
        )
    )
    total = sum(float(v) for v in timings_ms.values())
    note = " (grey: not counted)" if reference else ""
    fig.update_layout(
        title=f"{title}: {_duration(total)}{note}",
        **_LAYOUT,
        height=120 + 40 * len(parts),
        xaxis=dict(title="milliseconds", range=[0, 1.25 * max(values, default=1.0)]),
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def _duration(ms: float) -> str:
    return f"{ms / 1e3:.1f} s" if ms >= 1000 else f"{ms:.1f} ms"


def accuracy_bars(accuracies: Mapping[str, float], *, title: str) -> go.Figure:
    """Accuracies as percentages on a fixed 0-100% axis, one labelled bar each."""
    names, values = list(accuracies), [float(v) for v in accuracies.values()]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            text=[f"{v:.1%}" for v in values],
            textposition="outside",
            cliponaxis=False,
            marker_color=["#8172B3", "#4C72B0", "#55A868"][: len(names)],
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title, **_LAYOUT, height=120 + 45 * len(names), xaxis=dict(range=[0, 1.15], tickformat=".0%")
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def energy_histograms(
    scores: Mapping[str, np.ndarray],
    metrics: Mapping[str, Mapping[str, float]],
    *,
    in_name: str = "in-distribution",
    out_name: str = "out-of-distribution",
) -> go.Figure:
    """Energy scores in vs out of distribution, native target head (left) and mapped source (right).

    ``scores`` has ``native_in``, ``native_out``, ``mapped_in``, ``mapped_out``; ``metrics`` maps "native" and
    "mapped" to ``{"auroc", "fpr95"}``, shown in the panel titles.
    """
    names = {"native": "provider's own model", "mapped": "client's, mapped"}
    titles = [
        f"{names[side]}: AUROC {metrics[side]['auroc']:.2f}, FPR@95 {metrics[side]['fpr95']:.0%}"
        for side in ("native", "mapped")
    ]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True, shared_xaxes="all")
    all_scores = np.concatenate([np.asarray(v, dtype=float) for v in scores.values()])
    bins = dict(start=float(all_scores.min()), end=float(all_scores.max()), size=float(np.ptp(all_scores)) / 40 or 1.0)
    for col, side in enumerate(("native", "mapped"), start=1):
        for suffix, name, colour in (("in", in_name, "#4C72B0"), ("out", out_name, "#C44E52")):
            fig.add_trace(
                go.Histogram(
                    x=np.asarray(scores[f"{side}_{suffix}"], dtype=float),
                    name=name,
                    xbins=bins,
                    marker_color=colour,
                    opacity=0.6,
                    histnorm="probability",
                    legendgroup=name,
                    showlegend=col == 1,
                    hovertemplate=f"{name}<br>energy %{{x}}<br>share %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        barmode="overlay",
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=90, b=10)},
        height=420,
        legend=dict(orientation="h", y=-0.2),
        title="Energy score (lower = more in-distribution)",
    )
    fig.update_xaxes(title="energy")
    fig.update_yaxes(title="share of texts", col=1)
    return fig


def speed_bars(tokens_per_s: Mapping[str, float], *, title: str = "Generation speed (tokens/s)") -> go.Figure:
    """Tokens per second of each continuation."""
    names, values = list(tokens_per_s), [float(v) for v in tokens_per_s.values()]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            text=[f"{v:.1f}" for v in values],
            textposition="outside",
            marker_color=["#4C72B0", "#8172B3", "#55A868"][: len(names)],
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f} tokens/s<extra></extra>",
        )
    )
    fig.update_layout(title=title, **_LAYOUT, height=300, yaxis=dict(title="tokens/s"))
    return fig


def token_latency(token_ms: Mapping[str, Sequence[float]], *, title: str) -> go.Figure:
    """Each stream's own compute time per token (ms), token by token, on a log axis (plaintext tokens take tens
    of milliseconds, encrypted ones seconds)."""
    fig = go.Figure()
    for i, (name, ms) in enumerate(token_ms.items()):
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(ms) + 1)),
                y=[float(v) for v in ms],
                mode="lines+markers",
                name=name,
                line=dict(color=STREAM_COLOURS[i % len(STREAM_COLOURS)]),
                hovertemplate=f"{html.escape(name)}, token %{{x}}: %{{y:.0f}} ms<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        **_LAYOUT,
        height=320,
        xaxis=dict(title="token", dtick=1 if max((len(v) for v in token_ms.values()), default=0) <= 16 else None),
        yaxis=dict(title="ms per token", type="log"),
        legend=dict(orientation="h", yanchor="top", y=-0.3),
    )
    fig.update_layout(margin=dict(_LAYOUT["margin"], b=40))
    return fig


def report_html(
    title: str, verdict: str, intro: str, figures: Mapping[str, go.Figure], tables: Sequence[tuple[str, str]] = ()
) -> str:
    """One self-contained HTML page (plotly.js inlined once) that opens offline: the export for slides.

    ``verdict`` is the headline sentence and ``intro`` what was selected (plain text); ``figures`` maps a file
    name to a figure, so that each figure's camera button saves a sensibly named PNG; ``tables`` are
    (heading, HTML table) pairs, e.g. from ``pandas.DataFrame.to_html``.
    """
    plots = "".join(
        fig.to_html(
            full_html=False, include_plotlyjs=(i == 0), config={"toImageButtonOptions": {"filename": name, "scale": 2}}
        )
        for i, (name, fig) in enumerate(figures.items())
    )
    sections = "".join(f"<h2>{html.escape(heading)}</h2>{table}" for heading, table in tables)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "p.verdict{font-size:1.3em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p class='verdict'>{html.escape(verdict)}</p>"
        f"<p>{html.escape(intro)}</p>{plots}{sections}</body></html>"
    )
