"""The demo with its provider on the other side of a network: ``python -m securealign serve --assets`` in one
process, ``python app.py`` with ``SECUREALIGN_PROVIDER_URL`` in another. Encrypted answers must equal the library's
plaintext computation, the provider must see the app's session, and a provider that goes away must give a readable
message, not a traceback.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from securealign.app_support import service
from securealign.crypto import plaintext_logits
from securealign.experiments import artifacts
from securealign.models.embeddings import embed

SOURCE, TARGET = "minilm", "wordllama"
pytestmark = pytest.mark.slow  # a served app, model fits or ciphertexts by the hundred: not in the fast tier


@pytest.fixture(scope="module")
def provider_url(launch_provider):
    with launch_provider("--assets") as started:
        yield started


def test_app_queries_a_remote_provider(provider_url, launch_app) -> None:
    url, proc = provider_url
    served = httpx.get(f"{url}/models").json()["models"]
    assert len(served) == sum(1 for _ in artifacts.demo_models())  # every task and ordered pair of the assets
    task = service.catalogue()["tasks"][0][1]
    text = service.examples(task)[0]
    head, affine = artifacts.load_head(task, TARGET), artifacts.load_map(task, SOURCE, TARGET)
    expected = plaintext_logits(embed(SOURCE, [text], use_cache=False)[0], head.V, head.c, affine.W, affine.b)
    with launch_app({service.PROVIDER_URL_ENV: url}) as app_url:
        client = Client(app_url, verbose=False)
        for mode in ("sealed", "paper"):
            result = client.predict(text, SOURCE, TARGET, task, mode, True, api_name="/classify")
            np.testing.assert_allclose(result["mapped_encrypted"]["logits"], expected, atol=1e-3)
        assert httpx.get(f"{url}/health").json()["sessions"] >= 1  # the app's public context reached the provider
        proc.terminate()
        proc.wait(timeout=30)
        with pytest.raises(AppError) as err:
            client.predict(text, SOURCE, TARGET, task, "sealed", True, api_name="/classify")
        assert "could not be reached" in str(err.value) and "Traceback" not in str(err.value)


def test_the_app_says_when_its_answer_is_circuit_private(launch_provider, launch_app) -> None:
    """A provider started with ``--circuit-private all`` gives only flooded answers; the app's result says so
    and its answers still equal the plaintext computation within the flooded tolerance."""
    task = service.catalogue()["tasks"][0][1]
    text = service.examples(task)[0]
    head, affine = artifacts.load_head(task, TARGET), artifacts.load_map(task, SOURCE, TARGET)
    expected = plaintext_logits(embed(SOURCE, [text], use_cache=False)[0], head.V, head.c, affine.W, affine.b)
    with (
        launch_provider("--assets", "--circuit-private", "all") as (url, _),
        launch_app({service.PROVIDER_URL_ENV: url}) as app_url,
    ):
        client = Client(app_url, verbose=False)
        result = client.predict(text, SOURCE, TARGET, task, "sealed", True, api_name="/classify")
        assert result["privacy"] == "flooded" and "circuit-private" in result["privacy_reveals"]
        np.testing.assert_allclose(result["mapped_encrypted"]["logits"], expected, atol=1e-3)
        label = client.predict(text, SOURCE, TARGET, task, "sealed", True, "label", api_name="/classify")
        assert label["privacy"] == "flooded" and label["mapped_encrypted"]["label"] == head.classes[expected.argmax()]
