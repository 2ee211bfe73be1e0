"""The demo served for real: its Gradio API answers encrypted classification requests from a script, keeps one
set of CKKS keys per session, refuses bad input with a readable message (never a traceback), survives a model
that fails to load, exports a self-contained page; and the Space's Dockerfile lints clean.

The app runs as ``python app.py`` in a subprocess with a model cache whose mpnet folder is corrupt (every other
entry links to the real cache), so a real load failure is part of the same session as the real successes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from securealign import alignment
from securealign.app_support import service
from securealign.crypto import plaintext_logits
from securealign.datasets import load_public_corpus, load_task
from securealign.experiments import artifacts
from securealign.models.embeddings import embed
from securealign.paths import cache_dir

SOURCE, TARGET, BROKEN = "minilm", "wordllama", "mpnet"
pytestmark = pytest.mark.slow  # a served app, model fits or ciphertexts by the hundred: not in the fast tier
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def task() -> str:
    return service.catalogue()["tasks"][0][1]


@pytest.fixture(scope="module")
def broken_cache(tmp_path_factory) -> Path:
    """The real cache, entry by entry, except a corrupt copy of mpnet's assembled folder."""
    real, fake = cache_dir(), tmp_path_factory.mktemp("cache")
    for entry in real.iterdir():
        if entry.name != "models":
            (fake / entry.name).symlink_to(entry)
    (fake / "models").mkdir()
    for model in (real / "models").iterdir():
        if model.name != "all-mpnet-base-v2":
            (fake / "models" / model.name).symlink_to(model)
    corrupt = fake / "models" / "all-mpnet-base-v2"
    corrupt.mkdir()
    (corrupt / "modules.json").write_text("{ this is not json")
    return fake


@pytest.fixture(scope="module")
def app_url(broken_cache: Path, launch_app):
    with launch_app({"SECUREALIGN_CACHE": str(broken_cache)}) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


def _classify(
    client: Client,
    text: str,
    task: str,
    mode: str = "sealed",
    source: str = SOURCE,
    target: str = TARGET,
    encrypted: bool = True,
) -> dict:
    return client.predict(text, source, target, task, mode, encrypted, api_name="/classify")


def _refusal(call) -> str:
    with pytest.raises(AppError) as err:
        call()
    message = str(err.value)
    assert "Traceback" not in message and 'File "' not in message
    return message


@pytest.mark.parametrize("mode", ["sealed", "paper"])
def test_api_answers_an_encrypted_classification(client: Client, task: str, mode: str) -> None:
    text = service.examples(task)[0]
    result = _classify(client, text, task, mode)
    # the encrypted prediction is the plaintext one, up to CKKS noise
    assert result["mapped_encrypted"]["label"] == result["mapped_plaintext"]["label"]
    assert result["agreement"]["encrypted_vs_plaintext"] is True
    assert result["agreement"]["max_logit_error"] < 1e-3 and result["agreement"]["within_ckks_noise"]
    # and the plaintext one is the library's own computation on the real models, not something the app made up
    head, affine = artifacts.load_head(task, TARGET), artifacts.load_map(task, SOURCE, TARGET)
    expected = plaintext_logits(embed(SOURCE, [text], use_cache=False)[0], head.V, head.c, affine.W, affine.b)
    np.testing.assert_allclose(result["mapped_plaintext"]["logits"], expected, atol=1e-4)
    np.testing.assert_allclose(result["mapped_encrypted"]["logits"], expected, atol=1e-3)
    # the protocol trace: numbered steps, a provider step on a real ciphertext, a timing per part
    steps = result["protocol"]
    assert [s["number"] for s in steps] == list(range(1, len(steps) + 1))
    provider = [s for s in steps if s["party"] == "provider"]
    assert len(provider) == 1 and provider[0]["bytes"] > 10_000 and provider[0]["preview"]
    assert {"embedding", "encrypt", "provider", "decrypt"} <= set(result["timings_ms"])
    assert result["key_material"]["public_context_bytes"] > 100_000
    assert result["threat_model"]["title"].lower().startswith(mode)
    # the in-process provider gives plain answers unless asked otherwise, and the result says which kind it got
    assert result["privacy"] == "none" and "not circuit-private" in result["privacy_reveals"]


def test_a_label_only_answer_gives_the_plaintext_label_and_no_logits(client: Client, task: str) -> None:
    text = service.examples(task)[3]
    result = client.predict(text, SOURCE, TARGET, task, "sealed", True, "label", api_name="/classify")
    encrypted = result["mapped_encrypted"]
    assert encrypted["label"] == result["mapped_plaintext"]["label"] and result["agreement"]["encrypted_vs_plaintext"]
    assert encrypted["logits"] is None and encrypted["probabilities"] is None
    assert "max_logit_error" not in result["agreement"] and "sign" in result["answer_reveals"]
    assert "Unknown answer 'scores'" in _refusal(
        lambda: client.predict(text, SOURCE, TARGET, task, "sealed", True, "scores", api_name="/classify")
    )


def test_each_session_keeps_its_own_keys(app_url: str, task: str) -> None:
    first, second = Client(app_url, verbose=False), Client(app_url, verbose=False)
    text = service.examples(task)[1]
    a1, a2 = _classify(first, text, task), _classify(first, text, task)
    b1 = _classify(second, text, task)
    assert a1["key_material"]["key_id"] == a2["key_material"]["key_id"] != b1["key_material"]["key_id"]
    # the public context travels once per session, not with every query
    assert any(s["kind"] == "keys" for s in a1["protocol"])
    assert not any(s["kind"] == "keys" for s in a2["protocol"])


def test_encryption_off_gives_the_plaintext_comparison_only(client: Client, task: str) -> None:
    result = _classify(client, service.examples(task)[2], task, encrypted=False)
    assert result["mapped_encrypted"] is None and result["protocol"] == []
    assert set(result["native"]["probabilities"]) == set(result["classes"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("word " * 1000, "limit is 2,000"),
    ],
)
def test_bad_queries_get_a_readable_message(client: Client, task: str, text: str, expected: str) -> None:
    assert expected in _refusal(lambda: _classify(client, text, task))


def test_unknown_and_identical_models_are_refused(client: Client, task: str) -> None:
    assert "Unknown client model 'gpt-9'" in _refusal(lambda: _classify(client, "a query", task, source="gpt-9"))
    assert "same model" in _refusal(lambda: _classify(client, "a query", task, target=SOURCE))


@pytest.mark.parametrize("tokens", ["abc", None, 2.5, True, 0, service.MAX_APP_NEW_TOKENS + 1, [4]])
def test_generate_checks_the_number_of_tokens_before_any_work(client: Client, tokens) -> None:
    """Every argument of the API reaches the service unconverted, and the service refuses it with its own sentence
    (not a slider's generic error, and not a silent rounding of 2.5)."""
    message = _refusal(
        lambda: client.predict("The capital of France is", "gemma3", "smollm2", False, tokens, api_name="/generate")
    )
    assert f"The number of new tokens must be a whole number from 1 to {service.MAX_APP_NEW_TOKENS}" in message


@pytest.mark.parametrize(
    "endpoint, args, expected",
    [
        ("/classify", (5, SOURCE, TARGET, "{task}", "sealed", True), "The query must be text"),
        ("/classify", ("a query", SOURCE, TARGET, "{task}", "sealed", "no"), "encrypt must be true or false"),
        ("/classify", ("a query", SOURCE, TARGET, "{task}", "fast", True), "Unknown mode 'fast'"),
        ("/classify", ("a query", SOURCE, TARGET, None, "sealed", True), "Unknown task None"),
        ("/classify", ("a query", SOURCE, ["mpnet"], "{task}", "sealed", True), "Unknown provider model"),
        ("/secure_fit", (SOURCE, TARGET, "sealed", "abc", "{task}"), "must be a whole number from"),
        ("/secure_fit", (SOURCE, TARGET, "sealed", None, "{task}"), "must be a whole number from"),
        ("/secure_fit", (SOURCE, TARGET, "sealed", 600.5, "{task}"), "must be a whole number from"),
        ("/secure_fit", (SOURCE, TARGET, "sealed", 600, "nope"), "Unknown task 'nope'"),
        ("/generate", ("Hello", "gemma3", "smollm2", "false", 4), "must be true or false"),
        ("/generate", (None, "gemma3", "smollm2", False, 4), "The prompt is empty"),
        ("/generate", ("Hello", "gemma3", "gpt-9", False, 4), "Unknown target language model 'gpt-9'"),
    ],
)
def test_every_api_argument_is_checked_by_the_service(
    client: Client, task: str, endpoint: str, args: tuple, expected: str
) -> None:
    args = tuple(task if a == "{task}" else a for a in args)
    assert expected in _refusal(lambda: client.predict(*args, api_name=endpoint))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 12.5, "12", np.bool_(True)])
def test_counts_that_json_cannot_carry_are_refused_too(value) -> None:
    with pytest.raises(service.ServiceError, match="whole number"):
        next(service.generate("Hello", "gemma3", "smollm2", False, value))


def test_a_model_that_fails_to_load_is_reported_and_nothing_is_lost(client: Client, task: str) -> None:
    message = _refusal(lambda: _classify(client, "a query about taxes", task, source=BROKEN))
    assert "could not be loaded" in message and service.model_name(BROKEN) in message
    # the same session goes on working with the other models
    assert _classify(client, "a query about taxes", task)["mapped_encrypted"] is not None


def test_api_fits_a_map_under_encryption(client: Client, task: str) -> None:
    """The sealed fit over the app's API: the provider's map equals the plaintext ridge fit; the client gets none;
    the provider's head through it is measured on the same test split as the precomputed results."""
    fewest = service.secure_fit_choices(SOURCE, TARGET, "sealed")[0]  # the row rule's minimum for this pair
    result, summary, _ = client.predict(SOURCE, TARGET, "sealed", fewest, task, api_name="/secure_fit")
    assert result["max_abs_difference"] < 1e-4 and result["matches_plaintext"]
    assert result["who_holds_the_map"] == "provider"
    assert set(result["receipt"]) == {"fit_id", "model", "map_shape"}  # the client's receipt carries no map
    assert result["bytes_up"] > 0 and result["bytes_down"] > 64 * 50_000  # real ciphertexts came down
    assert abs(result["quality_secure"]["r2"] - result["quality_plaintext"]["r2"]) < 1e-4
    native = next(
        r
        for r in artifacts.load_results()
        if (r["task"], r["source"], r["target"], r["regime"]) == (task, SOURCE, TARGET, "public")
    )["baseline_acc"]
    accuracy = result["task_accuracy"]
    assert accuracy["provider_native"] == pytest.approx(native, abs=1e-9)
    # the provider's head through the plaintext ridge fit of the same texts, computed here: the secure map
    # differs by < 1e-4, which may flip a borderline text or two of the 1,000, never more
    texts, data = load_public_corpus(fewest), load_task(task)
    plain = alignment.fit_ridge(embed(SOURCE, texts), embed(TARGET, texts), relative_lambda=service.FIT_LAMBDA)
    expected = artifacts.load_head(task, TARGET).accuracy(plain.apply(embed(SOURCE, data.test_texts)), data.test_labels)
    assert accuracy["through_this_map"] == pytest.approx(expected, abs=0.003)
    assert "Same map as in plaintext" in summary and "What the map is for" in summary
    assert "same model" in _refusal(
        lambda: client.predict(SOURCE, SOURCE, "paper", fewest, task, api_name="/secure_fit")
    )
    paper_fewest = service.secure_fit_choices(SOURCE, TARGET, "paper")[0]
    assert f"from {paper_fewest} to" in _refusal(
        lambda: client.predict(SOURCE, TARGET, "paper", paper_fewest - 1, task, api_name="/secure_fit")
    )


def test_generation_refuses_bad_prompts(client: Client) -> None:
    assert "empty" in _refusal(lambda: client.predict("  ", "gemma3", "smollm2", False, 4, api_name="/generate"))
    too_long = "x" * (service.MAX_PROMPT_CHARS + 1)
    assert "limit" in _refusal(lambda: client.predict(too_long, "gemma3", "smollm2", False, 4, api_name="/generate"))


def test_export_follows_the_selections_in_one_self_contained_page(task: str) -> None:
    import app

    result, _ = service.classify(service.examples(task)[0], SOURCE, TARGET, task)
    result = service.add_reference(result)
    regime = service.catalogue()["demo_regime"]
    path = app.comparison_page(result, "public", "cka", task, regime)
    page = path.read_text(encoding="utf-8")
    # the heatmap of the chosen texts and metric, the chosen task and regime's accuracies, the query's two charts
    assert page.startswith("<!DOCTYPE html>") and page.count("Plotly.newPlot") == 4
    assert "<script src=" not in page  # plotly.js is inlined: the page opens offline
    assert "The protocol, step by step" in page and result["mapped_encrypted"]["label"] in page
    assert "the same answer as plaintext" in page  # the headline verdict
    assert "similarity-public-cka" in page  # each figure's camera button saves a named PNG
    # only the selected regime's rows (one per ordered pair), with display names and readable p-values
    pairs = [r for r in artifacts.load_results() if (r["task"], r["regime"]) == (task, regime)]
    assert page.split("Precomputed results")[1].count("<tr>") == len(pairs)
    assert service.model_name(SOURCE) in page and "e-01" not in page
    shutil.rmtree(path.parent)


def test_results_table_and_fit_quality_come_from_the_assets(task: str) -> None:
    rows = [r for r in artifacts.load_results() if r["task"] == task]
    assert len(service.results_table(task)) == len(rows)
    # the baselines beside the mapped accuracy are seed 0 of seeds.json for the same pair and regime
    table = service.results_table(task, "public+128")
    shown = table[
        (table["client model"] == service.model_name(SOURCE)) & (table["provider model"] == service.model_name(TARGET))
    ].iloc[0]  # display names
    seed0 = next(
        r
        for r in artifacts.load_seed_results()
        if (r["task"], r["source"], r["target"], r["regime"], r["seed"]) == (task, SOURCE, TARGET, "public+128", 0)
    )
    assert shown["client probe, provider's labels (%)"] == round(100 * seed0["probe_distilled_acc"], 1)
    assert shown["shuffled-pair map (%)"] == round(100 * seed0["shuffled_acc"], 1)
    fit = service.map_quality_matrix(task, "task", "mapped_acc")
    assert np.all(np.isnan(np.diag(fit["matrix"])))
    i, j = fit["keys"].index(SOURCE), fit["keys"].index(TARGET)
    row = next(
        r for r in rows if (r["source"], r["target"], r["regime"], r["map"]) == (SOURCE, TARGET, "task", "ridge")
    )
    assert fit["matrix"][i, j] == pytest.approx(row["mapped_acc"])


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "--format", "json", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, json.dumps(json.loads(done.stdout or "[]"), indent=1) + done.stderr
