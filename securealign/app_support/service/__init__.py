"""What the demo app asks of the library: choices from the precomputed assets, one query run natively, mapped and
encrypted (with timings and the protocol trace), the OOD comparison, result tables, streamed generation, export.

The app only wires widgets to these functions, so every number on the page comes from here and is testable
without a browser. Everything returns plain dicts and lists (JSON-able), because the same results go to the
page, to the Gradio API and into the exported report. Input problems and model failures surface as
:class:`ServiceError` with a sentence a presenter can read aloud; nothing here knows about Gradio.

One module per thing the page serves, read in this order: ``checks`` (input checks and the errors the page shows),
``choices`` (what can be chosen), ``results`` (the precomputed tables and figures' numbers), ``provider_link``
(the provider and the client's keys), ``queries`` (one query, plaintext and encrypted), ``fitting`` (secure fit),
``generation`` and ``export``. The names below are the service's interface; importing it does no work (the provider
is made on first use).
"""

from securealign.app_support.service.checks import (
    MAX_QUERY_CHARS,
    ModelLoadError,
    ProgressFn,
    ServiceError,
    check_query,
)
from securealign.app_support.service.choices import (
    METRIC_LABELS,
    PUBLIC_LABEL,
    SHORT_NAMES,
    STORY_CLIENT,
    STORY_PROVIDER,
    STORY_TASK,
    catalogue,
    examples,
    model_name,
    true_label,
)
from securealign.app_support.service.export import export_html
from securealign.app_support.service.fitting import (
    FIT_HELD_OUT,
    FIT_LAMBDA,
    FIT_MATCH_TOLERANCE,
    FIT_SECONDS_PER_TEXT,
    FIT_TEXTS,
    secure_fit,
    secure_fit_choices,
    secure_fit_estimate,
)
from securealign.app_support.service.generation import (
    ENCRYPTED_SECONDS_PER_TOKEN,
    MAX_APP_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    STORY_NEW_TOKENS,
    STORY_PAIRS,
    STORY_PROMPT,
    encrypted_seconds_per_token,
    generate,
    pair_figures,
    story_generate,
    story_pair_key,
    story_pairs,
    warm_story_pair,
)
from securealign.app_support.service.provider_link import PROVIDER_URL_ENV, close_client, new_client
from securealign.app_support.service.queries import (
    ENCRYPTED_TOLERANCE,
    OVERHEAD_BAR,
    REFERENCE_BAR,
    add_reference,
    classify,
    warm_up,
)
from securealign.app_support.service.results import (
    BASELINE_COLUMNS,
    FIT_MEASURES,
    PERCENT_COLUMNS,
    REGIME_SHORT,
    RESULT_COLUMNS,
    map_quality_matrix,
    ood_comparison,
    pair_summary,
    results_table,
    similarity,
)

__all__ = [
    "BASELINE_COLUMNS",
    "ENCRYPTED_SECONDS_PER_TOKEN",
    "ENCRYPTED_TOLERANCE",
    "FIT_HELD_OUT",
    "FIT_LAMBDA",
    "FIT_MATCH_TOLERANCE",
    "FIT_MEASURES",
    "FIT_SECONDS_PER_TEXT",
    "FIT_TEXTS",
    "MAX_APP_NEW_TOKENS",
    "MAX_PROMPT_CHARS",
    "MAX_QUERY_CHARS",
    "METRIC_LABELS",
    "OVERHEAD_BAR",
    "PERCENT_COLUMNS",
    "PROVIDER_URL_ENV",
    "PUBLIC_LABEL",
    "REFERENCE_BAR",
    "REGIME_SHORT",
    "RESULT_COLUMNS",
    "SHORT_NAMES",
    "STORY_CLIENT",
    "STORY_NEW_TOKENS",
    "STORY_PAIRS",
    "STORY_PROMPT",
    "STORY_PROVIDER",
    "STORY_TASK",
    "ModelLoadError",
    "ProgressFn",
    "ServiceError",
    "add_reference",
    "catalogue",
    "check_query",
    "classify",
    "close_client",
    "encrypted_seconds_per_token",
    "examples",
    "export_html",
    "generate",
    "map_quality_matrix",
    "model_name",
    "new_client",
    "ood_comparison",
    "pair_figures",
    "pair_summary",
    "results_table",
    "secure_fit",
    "secure_fit_choices",
    "secure_fit_estimate",
    "similarity",
    "story_generate",
    "story_pair_key",
    "story_pairs",
    "true_label",
    "warm_story_pair",
    "warm_up",
]
