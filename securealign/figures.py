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

# One colour per variant, the same in every figure of a comparison.
VARIANT_COLOURS = {
    "native target": "#4C72B0",
    "mapped (plaintext)": "#DD8452",
    "mapped (encrypted)": "#55A868",
}
PART_COLOURS = {"embedding": "#8172B3", "map": "#CCB974", "keys (once)": "#BBBBBB", "encrypt": "#55A868",
                "provider": "#C44E52", "decrypt": "#64B5CD", "client": "#4C72B0",
                "plaintext ridge": "#DD8452"}
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=50, b=10), font=dict(size=13))


def heatmap(matrix: Sequence[Sequence[float]], row_labels: Sequence[str], col_labels: Sequence[str], *,
            title: str, value_name: str, row_axis: str = "", col_axis: str = "") -> go.Figure:
    """A labelled heatmap with each cell's value written in it; missing values (NaN/None) stay blank."""
    z = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(col_labels), y=list(row_labels), colorscale="Viridis",
        texttemplate="%{z:.2f}", textfont=dict(size=14),
        colorbar=dict(title=dict(text=value_name, side="right")),
        hovertemplate=f"{row_axis or 'row'}: %{{y}}<br>{col_axis or 'column'}: %{{x}}<br>"
                      f"{value_name}: %{{z:.4f}}<extra></extra>",
    ))
    fig.update_layout(title=title, **_LAYOUT, height=max(360, 70 * len(row_labels) + 140))
    fig.update_xaxes(title=col_axis, tickangle=-20, side="bottom")
    fig.update_yaxes(title=row_axis, autorange="reversed")
    return fig


def probability_bars(classes: Sequence[str], variants: Mapping[str, Sequence[float]], *,
                     title: str = "Class probabilities") -> go.Figure:
    """Grouped horizontal bars: one group per class, one bar per variant (native, mapped, encrypted)."""
    fig = go.Figure()
    for name, probs in variants.items():
        probs = np.asarray(probs, dtype=float)
        fig.add_trace(go.Bar(
            y=list(classes), x=probs, name=name, orientation="h", marker_color=VARIANT_COLOURS.get(name),
            text=[f"{p:.1%}" for p in probs], textposition="outside", cliponaxis=False,
            hovertemplate=f"{name}<br>%{{y}}: %{{x:.4f}}<extra></extra>",
        ))
    fig.update_layout(title=title, barmode="group", **_LAYOUT, height=140 + 32 * len(classes) * max(1, len(variants)),
                      legend=dict(orientation="h", y=-0.15), xaxis=dict(range=[0, 1.15], tickformat=".0%"))
    fig.update_yaxes(autorange="reversed")
    return fig


def latency_bars(timings_ms: Mapping[str, float], *, title: str = "Where the time goes (ms)") -> go.Figure:
    """One horizontal bar per part of the query, in protocol order, each labelled with its milliseconds.

    Separate bars rather than one stacked bar: the encrypted parts take a few ms beside embedding's hundreds,
    and a stacked segment that thin cannot carry its label.
    """
    parts, values = list(timings_ms), [float(v) for v in timings_ms.values()]
    fig = go.Figure(go.Bar(
        y=parts, x=values, orientation="h", marker_color=[PART_COLOURS.get(p, "#888888") for p in parts],
        text=[f"{v:.1f} ms" for v in values], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f} ms<extra></extra>",
    ))
    fig.update_layout(title=f"{title} — total {sum(values):.1f} ms", **_LAYOUT, height=120 + 40 * len(parts),
                      xaxis=dict(title="milliseconds", range=[0, 1.2 * max(values, default=1.0)]))
    fig.update_yaxes(autorange="reversed")
    return fig


def energy_histograms(scores: Mapping[str, np.ndarray], metrics: Mapping[str, Mapping[str, float]], *,
                      in_name: str = "in-distribution", out_name: str = "out-of-distribution") -> go.Figure:
    """Energy scores in vs out of distribution, native target head (left) and mapped source (right).

    ``scores`` has ``native_in``, ``native_out``, ``mapped_in``, ``mapped_out``; ``metrics`` maps "native" and
    "mapped" to ``{"auroc", "fpr95"}``, shown in the panel titles.
    """
    names = {"native": "provider's model, native", "mapped": "client's model, mapped"}
    titles = [f"{names[side]}: AUROC {metrics[side]['auroc']:.3f}, FPR@95 {metrics[side]['fpr95']:.3f}"
              for side in ("native", "mapped")]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True)
    all_scores = np.concatenate([np.asarray(v, dtype=float) for v in scores.values()])
    bins = dict(start=float(all_scores.min()), end=float(all_scores.max()), size=float(np.ptp(all_scores)) / 40 or 1.0)
    for col, side in enumerate(("native", "mapped"), start=1):
        for suffix, name, colour in (("in", in_name, "#4C72B0"), ("out", out_name, "#C44E52")):
            fig.add_trace(go.Histogram(
                x=np.asarray(scores[f"{side}_{suffix}"], dtype=float), name=name, xbins=bins, marker_color=colour,
                opacity=0.6, histnorm="probability", legendgroup=name, showlegend=col == 1,
                hovertemplate=f"{name}<br>energy %{{x}}<br>share %{{y:.3f}}<extra></extra>",
            ), row=1, col=col)
    fig.update_layout(barmode="overlay", **_LAYOUT, height=400, legend=dict(orientation="h", y=-0.2),
                      title="Energy score (lower = more in-distribution)")
    fig.update_xaxes(title="energy")
    fig.update_yaxes(title="share of texts", col=1)
    return fig


def speed_bars(tokens_per_s: Mapping[str, float], *, title: str = "Generation speed (tokens/s)") -> go.Figure:
    """Tokens per second of each continuation."""
    names, values = list(tokens_per_s), [float(v) for v in tokens_per_s.values()]
    fig = go.Figure(go.Bar(x=names, y=values, text=[f"{v:.1f}" for v in values], textposition="outside",
                           marker_color=["#4C72B0", "#8172B3", "#55A868"][: len(names)], cliponaxis=False,
                           hovertemplate="%{x}: %{y:.2f} tokens/s<extra></extra>"))
    fig.update_layout(title=title, **_LAYOUT, height=300, yaxis=dict(title="tokens/s"))
    return fig


def report_html(title: str, intro: str, figures: Sequence[go.Figure], tables: Sequence[tuple[str, str]] = ()) -> str:
    """One self-contained HTML page (plotly.js inlined once) that opens offline: the export for slides.

    ``intro`` is plain text; ``tables`` are (heading, HTML table) pairs, e.g. from ``pandas.DataFrame.to_html``.
    """
    plots = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures))
    sections = "".join(f"<h2>{html.escape(heading)}</h2>{table}" for heading, table in tables)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{plots}{sections}</body></html>")
