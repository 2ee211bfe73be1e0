"""The app's query encoders in a process of their own (``encoder_process``): the vectors are the library's own, a
load that fails there fails with its own exception (so the page can name the cause), and the process goes when the
app does."""

from __future__ import annotations

import numpy as np
import pytest

from securealign.app_support.encoder_process import EncoderProcess
from securealign.models.embeddings import embed
from securealign.models.zoo import UnknownModelError

TEXT = "The film is a delight from start to finish."


@pytest.fixture(scope="module")
def encoders() -> EncoderProcess:
    process = EncoderProcess()
    process.warm(["minilm"])  # answered by nothing: the next call simply waits for the load
    return process


def test_a_query_embeds_exactly_as_in_process(encoders: EncoderProcess) -> None:
    z = encoders.embed("minilm", TEXT)
    assert z.shape == (384,) and z.dtype == np.float32
    np.testing.assert_array_equal(z, embed("minilm", [TEXT], use_cache=False, progress=False)[0])
    assert not np.array_equal(z, encoders.embed("minilm", TEXT + " Really."))


def test_a_failed_load_raises_the_libraries_own_exception_and_the_process_goes_on(encoders: EncoderProcess) -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'no-such-model'"):
        encoders.load("no-such-model")
    assert encoders.embed("minilm", TEXT).shape == (384,)


def test_the_process_ends_with_its_app() -> None:
    process = EncoderProcess()
    child = process._proc
    process._conn.close()  # what the app's exit does to its end of the socket
    assert child.wait(timeout=60) == 0
