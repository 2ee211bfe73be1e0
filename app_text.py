"""The words and number formats of the demo page: one vocabulary (display names, percentages, one-line metric
explanations, captions for weak results) shared by every tab and by the export.

Pure functions of the service's JSON-able results: nothing here computes a number, loads a model or knows about
widgets, so the app (app.py) stays a wiring layer and the texts can be read in one place.
"""

from __future__ import annotations

import pandas as pd

# the prediction paths, in the order the page shows them (the names figures.VARIANT_COLOURS knows)
PATH_NAMES = {
    "mapped_encrypted": "encrypted (client → provider)",
    "mapped_plaintext": "same, in plaintext",
    "native": "provider's own model",
}
PATH_HELP = {
    "mapped_encrypted": "client's model → map → provider's head, under CKKS encryption",
    "mapped_plaintext": "the same computation without encryption, for comparison",
    "native": "reference: the provider's model on the raw text (needs the text, so not part of the protocol)",
}

STREAM_NAMES = {
    "native_source": "source model alone",
    "native_target": "target model alone",
    "mapped": "source reads → target's head writes",
}

# one line per metric or symbol the page shows: captions, tooltips and the glossary use the same words
GLOSSARY = {
    "linear CKA": "how alike two models' representations of the same texts are, up to rotation and scale "
    "(1 = same geometry, 0 = unrelated)",
    "debiased CKA": "CKA corrected for the bias of a finite sample (small samples otherwise look more alike)",
    "mutual k-NN (k = 10)": "share of each text's 10 nearest neighbours that both models agree on",
    "SVCCA": "mean correlation of the two models' most correlated directions",
    "R²": "share of the provider embedding's variance the map explains on held-out texts (1 = perfect, "
    "0 = no better than the mean, negative = worse than the mean)",
    "cosine": "mean cosine between a mapped embedding and the provider's own embedding of the same text",
    "top-1 retrieval": "how often a mapped embedding is closest to the provider's embedding of the same text",
    "accuracy": "share of held-out test texts classified correctly",
    "% of native": "mapped accuracy as a share of the provider's own accuracy (100% = nothing lost)",
    "McNemar p": "chance of a gap this large between mapped and native accuracy on the same texts if there were "
    "none (below 0.05: a real difference)",
    "AUROC": "chance that an in-distribution text scores as more in-distribution than an unrelated one "
    "(0.5 = chance, 1 = perfect, below 0.5 = ranked the wrong way round)",
    "FPR@95": "share of unrelated texts let through when 95% of in-distribution texts are kept (lower is better)",
    "energy": "E = −log Σ exp(logits): low for texts the head is confident about",
    "K": "number of classes, so the client decrypts K logits",
    "W, b": "the affine map from the client's embedding space into the provider's",
    "V, c": "the provider's linear task head",
    "Galois keys": "public keys that let the provider rotate encrypted slots (to sum them); they cannot decrypt",
    "CKKS": "homomorphic encryption for real numbers: the provider computes on ciphertexts it cannot read",
    "token agreement": "share of generated tokens where the mapped continuation equals the target model's own",
    "perplexity": "how surprised the target model is by a text (lower = more natural to it)",
}
MEASURE_NAMES = {
    "r2": "R²",
    "cosine": "cosine",
    "top1": "top-1 retrieval",
    "mapped_acc": "accuracy",
    "retained": "% of native",
}


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


NBSP = "\u00a0"  # between a number and its unit, so that a narrow column never puts them on different lines


def size(n: int) -> str:
    return f"{n / 1e6:.2f}{NBSP}MB" if n >= 1e6 else f"{n / 1e3:.1f}{NBSP}KB" if n >= 1e3 else f"{n}{NBSP}B"


def duration(ms: float) -> str:
    return f"{ms / 1e3:.1f}{NBSP}s" if ms >= 1000 else f"{ms:.0f}{NBSP}ms" if ms >= 10 else f"{ms:.1f}{NBSP}ms"


def explain(term: str) -> str:
    """The one-line explanation of a metric or symbol, as a caption."""
    return f"*{term}*: {GLOSSARY[term]}."


def plain(markdown: str) -> str:
    """A one-line Markdown headline as plain text (for the export's verdict)."""
    return markdown.lstrip("# ").replace("**", "")


def threat_md(threat_models: dict) -> str:
    parts = []
    for threat in threat_models.values():
        parts.append(
            f"## {threat['title']}\n"
            f"| | in plain words |\n|---|---|\n"
            f"| the client learns | {threat['client_learns']} |\n"
            f"| the provider learns | {threat['provider_learns']} |\n"
            f"| the provider holds | {threat['provider_holds']} |\n"
            f"| limits | {threat['limits']} |\n"
        )
    parts.append(
        "## Encryption off\nThe client sends its embedding in the clear: the provider (and anyone on the "
        "way) reads the vector, from which embedding-inversion attacks recover much of the text, and the "
        "answer. The Secure inference tab shows exactly what would travel.\n"
    )
    parts.append(
        "## In this demo\nBoth parties run inside this server so that one page can show them; each browser "
        "session gets its own CKKS keys, kept in that session's state and dropped when it ends. The "
        "provider object only ever receives the public context (parameters and Galois keys) and "
        "ciphertexts. For two real machines run the provider as `python -m securealign serve` "
        "(see docs/protocol.md). Your queries are never written to the embedding cache."
    )
    return "\n".join(parts)


def glossary_md() -> str:
    return "## What the numbers mean\n" + "\n".join(f"- **{term}**: {text}." for term, text in GLOSSARY.items())


# ---- the story --------------------------------------------------------------------------------------------------


def story_agree(pair: dict, client: str, provider: str) -> str:
    return (
        f"### {client} and {provider}, trained separately, see the same texts alike: linear CKA "
        f"**{pair['cka']:.2f}** on {pair['n_texts']:,} public texts (1 = same geometry; all pairs here: "
        f"{pair['cka_min']:.2f} to {pair['cka_max']:.2f})."
    )


def story_map(pair: dict, client: str, provider: str) -> str:
    return (
        f"### A map fitted on the {pair['regime_label']} carries {client}'s embeddings into {provider}'s space: "
        f"{provider}'s head is right on **{pct(pair['mapped_acc'])}** of them, against "
        f"**{pct(pair['provider_acc'])}** on its own embeddings (**{pct(pair['retained'], 0)}** kept)."
    )


# ---- secure inference ------------------------------------------------------------------------------------------


def _mark(result: dict, key: str) -> str:
    correct = result.get("correct", {}).get(key)
    return "" if correct is None else " ✓" if correct else " ✗"


def query_headline(result: dict) -> str:
    """One sentence with the numbers that prove it: same answer, how long the client waited, what travelled."""
    plain = result["mapped_plaintext"]["label"]
    truth = f" (true label: **{result['true_label']}**)" if result["true_label"] else ""
    if result["mapped_encrypted"] is None:
        exposed = result["exposed"]
        return (
            f"### Answer **{plain}**{truth}, computed in plaintext in {duration(result['wall_ms'])}: the "
            f"provider received the client's {exposed['dims']}-number embedding unencrypted."
        )
    agree = result["agreement"]
    same = "the same answer as plaintext" if agree["encrypted_vs_plaintext"] else "A DIFFERENT answer from plaintext"
    up, down, keys = _traffic(result)
    once = f" (plus this session's {size(keys)} of public keys, sent once)" if keys else ""
    return (
        f"### Encrypted answer **{result['mapped_encrypted']['label']}**{truth}: {same}. The client waited "
        f"{duration(result['wall_ms'])}; {size(up)} of ciphertext went up{once}, {size(down)} came back."
    )


def _traffic(result: dict) -> tuple[int, int, int]:
    """Bytes of query ciphertext up, result ciphertext down, and public keys (first query of a session only)."""
    keys = sum(s["bytes"] for s in result["protocol"] if s["kind"] == "keys")
    up = sum(s["bytes"] for s in result["protocol"] if s["party"] == "client") - keys
    down = sum(s["bytes"] for s in result["protocol"] if s["party"] == "provider")
    return up, down, keys


def query_summary(result: dict) -> str:
    """The three paths side by side, the agreement lines and, where the story needs one, a caption."""
    rows = ["| path | how | answer | probability |", "|---|---|---|---|"]
    for key, name in PATH_NAMES.items():
        pred = result[key]
        if pred is None:
            shown = "*encryption off*" if key == "mapped_encrypted" else "*computing…*"
            rows.append(f"| {name} | {PATH_HELP[key]} | {shown} | |")
        else:
            probability = pct(max(pred["probabilities"].values())) if pred["probabilities"] else "*label only*"
            rows.append(f"| {name} | {PATH_HELP[key]} | **{pred['label']}**{_mark(result, key)} | {probability} |")
    lines = [
        (f"**{result['source_name']}** (client) → **{result['target_name']}** (provider), {result['mode']} mode"),
        "",
        *rows,
        "",
    ]
    agree = result["agreement"]
    if result["encrypted"]:
        lines.append(f"The client learned {result['answer_reveals']}.  ")
        lines.append(f"The answer was {result['privacy_reveals']}.  ")
    if "max_logit_error" in agree:
        cause = (
            "within CKKS noise"
            if agree["within_ckks_noise"]
            else "**more than CKKS noise: the provider's model is not this pair's**"
        )
        lines.append(
            f"Largest difference between encrypted and plaintext logits: {agree['max_logit_error']:.1e} ({cause}).  "
        )
    if result["true_label"]:
        lines.append("✓ / ✗: right or wrong against the example's true label.  ")
    if result["native"] is not None and not agree["mapped_vs_native"]:
        lines.append(
            "The mapped answer differs from the provider's own model here. A map cannot add information "
            "the client's model lacks: when the client's model is weaker on this task, some answers "
            "differ (see the Results tab for each pair's accuracies).  "
        )
    if result["reference_ms"]:
        ms = sum(result["reference_ms"].values())
        lines.append(
            f"The provider's own model took {duration(ms)} more, computed after the answer was shown: it "
            "is a reference only this demo can compute, not part of the client's wait."
        )
    return "\n".join(lines)


def protocol_frame(result: dict) -> pd.DataFrame:
    """The protocol as numbered steps with real sizes; with encryption off, what would travel in the clear."""
    if result["mapped_encrypted"] is None:
        exposed = result["exposed"]
        values = ", ".join(f"{v:+.4f}" for v in exposed["first_values"])
        rows = [
            (
                1,
                "client",
                f"send {exposed['sent']} ({exposed['dims']} numbers)",
                "",
                size(exposed["bytes_up"]),
                f"{values}, … (readable: embeddings can be inverted to recover much of the text)",
            ),
            (
                2,
                "provider",
                f"apply the head, return the {len(result['classes'])} logits",
                "",
                size(exposed["bytes_down"]),
                "readable by the provider too",
            ),
        ]
    else:
        rows = [
            (
                s["number"],
                s["party"],
                s["what"],
                duration(s["ms"]),
                size(s["bytes"]) if s["bytes"] else "",
                s["preview"],
            )
            for s in result["protocol"]
        ]
    return pd.DataFrame(rows, columns=["#", "party", "step", "time", "sent", "what travels (bytes or values)"])


def protocol_md(result: dict) -> str:
    frame = protocol_frame(result)
    title = (
        "**Encryption off: what the provider would receive**"
        if result["mapped_encrypted"] is None
        else "**The protocol, step by step** (real message sizes; without the key the bytes look random)"
    )
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return title + "\n\n" + "\n".join(lines)


def keys_md(result: dict) -> str:
    threat = result["threat_model"]
    if result["mapped_encrypted"] is None:
        return (
            "**With encryption off, the provider learns the query's embedding and the answer**, and anyone "
            "who can read the traffic does too. Turn encryption on to see what the protocol hides."
        )
    keys = result["key_material"]
    return (
        f"**This session's keys**: public context (CKKS parameters + Galois keys for rotations "
        f"{keys['rotation_steps']}) = {size(keys['public_context_bytes'])}, sent once; the secret key is "
        f"{keys['secret_key']}. Imaginary residue of the decrypted logits: {keys['ckks_residue']:.1e} "
        f"(a wrong key would give ~1e30).\n\n**{threat['title']}**: client learns {threat['client_learns']}; "
        f"provider learns {threat['provider_learns']}."
    )


def who_sees_what(result: dict | None, threat_models: dict) -> str:
    """The story's last step: what each party saw in this session's query, in two columns."""
    mode = result["mode"] if result else "sealed"
    threat = threat_models[mode]
    if result and result["mapped_encrypted"] is not None:
        up = _traffic(result)[0]
        answer = f"{len(result['classes'])} logits" if result["answer"] == "logits" else "the label only"
        headline = (
            f"### The provider received {size(up)} of ciphertext and never the text or the embedding; "
            f"the client got back {answer} and never the provider's model."
        )
    else:
        headline = "### Run step 3 with encryption on to see what travelled."
    return (
        f"{headline}\n\n| | the client | the provider |\n|---|---|---|\n"
        f"| holds | its model, its texts, the secret key | {threat['provider_holds']} |\n"
        f"| learns | {threat['client_learns']} | {threat['provider_learns']} |\n\n"
        f"Limits: {threat['limits']}."
    )


# ---- secure fit ------------------------------------------------------------------------------------------------


def fit_estimate(n_texts: int, estimate: dict) -> str:
    return (
        f"Estimate before you start: about **{estimate['encrypted_s']:.0f} s** of encrypted work for "
        f"{n_texts:,} texts on two free cores. On top, the first time: both models embed "
        f"{estimate['public_texts']:,} public texts and the client's model the task's {estimate['test_texts']:,} "
        "test texts (seconds once cached; minutes on a busy machine when not)."
    )


def fit_md(result: dict) -> str:
    holder = (
        "the client now holds the map; the provider saw only ciphertexts of the client's embeddings"
        if result["mode"] == "paper"
        else "the provider now holds the map and can serve map + head in sealed mode; the client saw only "
        "ciphertexts of the provider's embeddings, and its receipt carries no map"
    )
    secure, plain = result["quality_secure"], result["quality_plaintext"]
    verdict = "same map as in plaintext" if result["matches_plaintext"] else "WRONG MAP"
    lines = [
        (
            f"### {result['source_name']} (client) → {result['target_name']} (provider), {result['mode']} mode, "
            f"{result['n_texts']:,} public texts: {verdict}"
        ),
        f"{holder} ({result['map_shape'][0]} × {result['map_shape'][1]}).  ",
        (
            f"**Wall clock**: {duration(result['wall_ms'])} in all (embedding the texts with both models, the fit, "
            f"measuring the map), of which {duration(result['secure_ms'])} the encrypted fit (the chart splits it by "
            f"party) vs {duration(result['plaintext_ms'])} for a plaintext ridge fit of the same texts; "
            f"{size(result['bytes_up'])} client → provider, {size(result['bytes_down'])} provider → client.  "
        ),
        (
            f"**Same map as in plaintext**: largest difference from the plaintext ridge solution "
            f"{result['max_abs_difference']:.1e} (CKKS noise; λ = {result['lambda']} fixed in advance).  "
            if result["matches_plaintext"]
            else f"**Warning: this map differs from the plaintext ridge solution** by up to "
            f"{result['max_abs_difference']:.1e}; do not use it.  "
        ),
        (
            f"**How good the map is** on {result['held_out']} held-out public texts: R² {secure['r2']:.2f} "
            f"(plaintext {plain['r2']:.2f}), cosine {secure['cosine']:.2f}, top-1 retrieval {pct(secure['top1'])}.  "
        ),
    ]
    acc = result["task_accuracy"]
    if acc is not None:
        lines.append(
            f"**What the map is for** ({acc['title']}, all {acc['n_test']:,} test texts): the provider's "
            f"head is right on {pct(acc['provider_native'])} of its own embeddings and on "
            f"{pct(acc['through_this_map'])} of the client's through this map (the precomputed public-only "
            f"map, fitted on {acc['public_map_texts']:,} texts: {pct(acc['public_map_precomputed'])}).  "
        )
    weak = secure["r2"] < 0.2 or (acc is not None and acc["through_this_map"] < acc["provider_native"] - 0.1)
    if weak:
        lines.append(
            f"*A weak map, as expected with {result['n_texts']:,} texts*: the secure fit is exact (it equals "
            "the plaintext fit), so the weakness is the data's, not the encryption's. More texts give a "
            "better map at a linear cost; the paper's maps use thousands."
        )
    return "\n".join(lines)


# ---- convergence, OOD, generation, results ---------------------------------------------------------------------


def fit_caption(matrix, measure: str) -> str:
    text = explain(MEASURE_NAMES[measure])
    if measure == "r2" and (matrix < 0).any():
        text += (
            " Some cells are below 0: for those pairs a map from public text explains less of the provider's "
            "embedding than its mean does, yet the task head can still work through it (look at accuracy)."
        )
    return text


def ood_caption(metrics: dict) -> str:
    text = f"{explain('energy')} {explain('AUROC')} {explain('FPR@95')}"
    if metrics["mapped"]["auroc"] < 0.5:
        text += (
            f" **The mapped AUROC ({metrics['mapped']['auroc']:.2f}) is below chance**: through this map the "
            "unrelated texts look *more* familiar to the head than its own kind. The paper reports OOD "
            "detection surviving a task-supervised map; a map fitted mostly on public text does not carry "
            "the head's sense of its own domain for every pair."
        )
    return text


def generation_md(snap: dict) -> str:
    def num(value, fmt: str = ".2f") -> str:
        return "n/a" if value is None else format(value, fmt)

    compat, fit = snap["compatibility"], snap["map"]
    lines = [
        (
            f"**Tokenizer compatibility** (the paper's predictor of success): exact token match "
            f"{pct(compat['exact_match_rate'])}, vocabulary overlap (Jaccard) {pct(compat['vocabulary_jaccard'])}  "
        ),
        (
            f"**Map fit** on held-out tokens: R² {num(fit.get('r2'))}, next-token agreement "
            f"{pct(fit.get('next_token_agreement'))}  "
        ),
    ]
    if "encrypted_step" in snap:
        step = snap["encrypted_step"]
        lines.append(
            f"**Last encrypted token**: client encrypts {duration(step['encrypt_ms'])}, provider "
            f"{duration(step['provider_ms'])}, client decrypts {duration(step['decrypt_ms'])}; "
            f"{size(step['bytes_up'])} up, {size(step['bytes_down'])} down. Encryption does not change "
            "the text: the encrypted head picks exactly the plaintext-mapped tokens.  "
        )
    if snap.get("quality"):
        quality = snap["quality"]
        lines.append(
            f"**Quality**: token agreement with the target model's own continuation "
            f"{pct(quality['token_agreement'])}; perplexity under the target: mapped "
            f"{num(quality['perplexity_mapped'], '.1f')}, its own text "
            f"{num(quality['perplexity_native_target'], '.1f')}.  "
        )
        lines.append(
            f"{explain('token agreement')} {explain('perplexity')} *As the paper found for sources under 4B "
            "parameters, the mapped text starts plausibly and then drifts*: low agreement is expected here."
        )
    return "\n".join(lines)


def generation_estimate(target_name: str, encrypted: bool, tokens: int, seconds_per_token: float | None) -> str:
    if not encrypted:
        return (
            f"Plaintext, {tokens} new tokens: each one is a step of all three continuations (their speeds are "
            "shown below as they stream); the first run also loads both models."
        )
    per_token = "" if seconds_per_token is None else f"about {seconds_per_token:.2g} s per token, "
    total = "" if seconds_per_token is None else f" ≈ {tokens * seconds_per_token:.0f} s"
    return (
        f"Encrypted head into {target_name}: {per_token}{tokens} tokens{total} on two free cores, on top of the "
        "plaintext generation (and, the first time, compiling the encrypted head)."
    )


# ---- the story's fifth step: one model writes with another's head -----------------------------------------------

STORY_STREAMS = {
    "native_source": "the source alone (its own head)",
    "native_target": "the target alone (its own head)",
    "mapped": "source reads → map → target's head writes",
    "mapped_encrypted": "the same, under encryption",
}
AGREES = "same token as the target's own"  # the highlight's legend


def story_pair_label(source_name: str, target_name: str) -> str:
    return f"{source_name} reads → {target_name}'s head writes"


def marked_tokens(tokens: list[str], agrees: list[bool] | None) -> list[tuple[str, str | None]]:
    """A stream's tokens for a highlighted text: the ones that agree with the target's own carry the legend."""
    return [(text, AGREES if agrees and agrees[i] else None) for i, text in enumerate(tokens)]


def generation_verdict(snap: dict) -> str:
    """The fifth step's one line: what the visitor sees (works / reads well in words of its own / drifts) and why
    (the token-match figure beside the paper's predictor); while the plaintext streams run, what is streaming."""
    names = snap["pair_figures"]
    source, target = names["source_name"], names["target_name"]
    verdict = snap.get("verdict")
    if verdict is None:
        return f"### {story_pair_label(source, target)}: streaming…"
    n, total = verdict["agreeing_tokens"], verdict["native_tokens"]
    agree = f"{'none' if n == 0 else n} of {total} tokens match {target}'s own"
    cut = f"their tokenizers cut {pct(verdict['exact_match_rate'], 0)} of tokens alike"
    paper = f"the paper: pairs above {pct(verdict['paper_exact_match'], 0)} succeed"
    ratio = verdict["perplexity_ratio"]
    if verdict["outcome"] == "works":
        why = f"{cut} ({paper})" if verdict["predicted"] else f"although {cut}, fewer than the paper's successes"
        return f"### {source} → {target} works: {agree}; {why}."
    if verdict["outcome"] == "reads well":
        why = f"{cut} ({paper})" if verdict["predicted"] else f"although {cut}, fewer than the paper's successes"
        return (
            f"### {source} → {target} reads well in words of its own: {agree}, yet {target} finds the text only "
            f"{ratio:.1f}× as surprising as its own; {why}."
        )
    surprise = "" if ratio is None else f" ({target} finds it {ratio:.1f}× as surprising as its own text)"
    why = (
        f"though {cut} ({paper}): token match alone does not explain it (the paper also finds sources under 4B "
        "parameters mostly drift)"
        if verdict["predicted"]
        else f"{cut}, too few ({paper})"
    )
    return f"### {source} → {target} drifts: {agree}{surprise}, {why}."


def encrypted_stream_label(snap: dict) -> str:
    """The encrypted stream's box title: before it starts, what it will cost (the measured seconds per token and
    the total); while it runs, how far it is and about how long is left, from its own tokens so far."""
    name, estimate = STORY_STREAMS["mapped_encrypted"], snap["encrypted_estimate"]
    done, total = len(snap["token_ms"]["mapped_encrypted"]), estimate["tokens"]
    if done == 0:
        per = estimate["seconds_per_token"]
        cost = "" if per is None else f": about {per:.1f} s per token, ≈ {duration(1e3 * per * total)} for {total}"
        return f"{name} (starts after the plaintext streams{cost})"
    if snap["finished"]:
        return name
    ms = sorted(snap["token_ms"]["mapped_encrypted"])
    return f"{name} (token {done} of {total}, ≈ {duration(ms[len(ms) // 2] * (total - done))} left)"


def story_streams_md(snap: dict) -> str:
    """Each stream's wait for its first token and its own time per token, labelled as what they are."""
    rows = ["| stream | first token after | per token (median) | tokens |", "|---|---|---|---|"]
    for name, label in STORY_STREAMS.items():
        ms = sorted(snap["token_ms"].get(name, []))
        if name in snap["waiting"]:
            per = snap["encrypted_estimate"]["seconds_per_token"]
            expected = "" if per is None else f"*about {duration(1e3 * per)} (measured earlier)*"
            rows.append(f"| {label} | *starts when the plaintext streams end* | {expected} | |")
            continue
        first = snap["first_token_s"].get(name)
        median = duration(ms[len(ms) // 2]) if ms else ""
        rows.append(f"| {label} | {'' if first is None else duration(1e3 * first)} | {median} | {len(ms)} |")
    lines = [
        "\n".join(rows),
        "",
        "*first token after*: seconds you wait from the start of decoding (the models are loaded) until that "
        "stream's first token; the plaintext streams take turns, one token each, and the encrypted one follows them. "
        "*per token*: that stream's own compute for one token (for the encrypted stream: the source's forward pass, "
        "encrypting, the provider's work over the whole vocabulary and decrypting; on a cold page the encrypted "
        "stream's first token also waits for the provider to compile its encrypted head, once).",
    ]
    verdict = snap.get("verdict")
    if verdict and verdict["perplexity_ratio"] is not None:
        quality = snap["quality"]
        lines.append(
            f"\n**Perplexity under the target** ({GLOSSARY['perplexity']}): the mapped text "
            f"{quality['perplexity_mapped']:.1f}, the target's own {quality['perplexity_native_target']:.1f} "
            f"({verdict['perplexity_ratio']:.1f}×)."
        )
    equal = snap.get("quality", {}).get("encrypted_equals_plaintext")
    if equal is not None:
        lines.append(
            "\n**Encrypted = plaintext, token for token.**"
            if equal
            else "\n**The encrypted stream differs from the plaintext one.**"
        )
    return "\n".join(lines)


def story_pairs_md(pairs: list[dict], run: dict | None = None) -> str:
    """Both sides, measured: each story pair's figures (its committed map's and, where it has run, the predictor
    study's) and this run's agreement."""
    rows = [
        "| pair | tokens cut alike (exact match) | next token = the target's own (held-out top-1 / top-5) | "
        "continuations agreeing with the target's own (study) | perplexity under the target, mapped / own (study, "
        "median) | this run |",
        "|---|---|---|---|---|---|",
    ]
    for p in pairs:
        mine = run and run.get("pair_figures", {}).get("pair") == p["pair"] and run.get("verdict")
        shown = f"{mine['outcome']}: {mine['agreeing_tokens']} of {mine['native_tokens']} tokens agree" if mine else ""
        study = p["study"]
        # one held-out set for both figures: the study's when it has the pair, else the map's own (top-1 only)
        top = f"{pct(study['top1'])} / {pct(study['top5'])}" if study else pct(p["next_token_agreement"])
        agreement = (
            f"{pct(study['continuation_agreement'])} of tokens ({study['prompts']} prompts × {study['new_tokens']})"
            if study
            else "*not measured*"
        )
        ppl = (
            f"{study['ppl_mapped_median']:.1f} / {study['ppl_native_median']:.1f}"
            if study and study["ppl_mapped_median"] is not None
            else "*not measured*"
        )
        rows.append(
            f"| {story_pair_label(p['source_name'], p['target_name'])} | {pct(p['exact_match_rate'])} | "
            f"{top} | {agreement} | {ppl} | {shown} |"
        )
    return (
        "\n".join(rows)
        + "\n\n*tokens cut alike*: share of the target's tokens, over the public texts the map was fitted on, that "
        "the source's tokenizer cuts at exactly the same characters: the paper's best predictor of success. *next "
        "token*: how often the map picks the token the target itself would, one step at a time on held-out text. "
        "*continuations*: greedy continuations of held-out prompts, token by token against the target's own "
        "(`benchmarks/predictor_study.py`)."
    )
