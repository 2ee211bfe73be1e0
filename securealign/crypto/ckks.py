"""CKKS parameters, key material and byte (de)serialization on SEAL's own API (``tenseal.sealapi``).

TenSEAL's high-level context always creates Galois keys for every power-of-two rotation (35 MB); SEAL itself
takes the exact list of rotation steps a computation needs, and encrypts symmetrically with a seeded ciphertext
(half the upload), so the protocol works on SEAL directly.

Parameters are fixed for the whole protocol: N = 8192 (4096 slots), moduli [60, 40, 60] bits, scale 2^40,
128-bit security. Every party builds the same context from these constants, so only Galois keys travel.
Every computation is one plaintext multiplication deep: a fresh ciphertext sits at the top level (primes 60 and
40), the product is rescaled by the 40-bit prime, and everything after it (rotations, conjugation, additions)
runs on a single 60-bit prime, where a rotation costs half what it costs on two. The classification layout
(``layout.py``) needs no output mask, so no second level: a mask would cost one, and could not be exact anyway.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import tenseal.sealapi as seal
import zstandard

from securealign.crypto.errors import LimitExceededError, ParameterError, WireFormatError

POLY_DEGREE = 8192
SLOTS = POLY_DEGREE // 2
COEFF_BITS = (60, 40, 60)
SCALE = 2.0**40
# CKKS rotation by k slots is the Galois automorphism x -> x^(3^k mod 2N)
_GALOIS_GENERATOR = 3

# A context may carry a key per power-of-two rotation step: every layout's all-reduce uses only those, and any
# rotation is a sum of them. More keys would only cost the provider memory.
MAX_ROTATION_KEYS = SLOTS.bit_length() - 1
# Complex conjugation of every slot (the Galois element 2N - 1). The provider adds a result to its conjugate
# before it leaves, so the client decrypts real parts only: otherwise a client could encrypt a second query in
# the imaginary parts, and blinding factors would cancel between a slot's real and imaginary parts.
CONJUGATION = 2 * POLY_DEGREE - 1


class _Loadable(Protocol):
    def load(self, context: seal.SEALContext, path: str) -> None: ...


T = TypeVar("T", bound=_Loadable)


@functools.lru_cache(maxsize=1)
def parameters() -> seal.EncryptionParameters:
    """The protocol's fixed CKKS parameters."""
    params = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    params.set_poly_modulus_degree(POLY_DEGREE)
    params.set_coeff_modulus(seal.CoeffModulus.Create(POLY_DEGREE, list(COEFF_BITS)))
    return params


@functools.lru_cache(maxsize=1)
def context() -> seal.SEALContext:
    """The SEAL context every party builds from the same constants (enforces 128-bit security)."""
    ctx = seal.SEALContext(parameters(), True, seal.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise RuntimeError(f"invalid CKKS parameters: {ctx.parameters_error_message()}")
    return ctx


@functools.lru_cache(maxsize=1)
def parameters_bytes() -> bytes:
    """The serialized parameters: sent with a public context so the provider can check both sides agree."""
    return save_bytes(parameters())


MAX_DEPTH = len(COEFF_BITS) - 2  # multiplication levels (the first and last primes are the base and special prime)


def fresh_parms_id(depth: int):
    """The level a fresh ciphertext is encrypted at for a computation of ``depth`` multiplications."""
    if not 1 <= depth <= MAX_DEPTH:
        raise ParameterError(f"a computation of depth {depth} does not fit {MAX_DEPTH} levels")
    data = context().first_context_data()
    for _ in range(MAX_DEPTH - depth):
        data = data.next_context_data()
    return data.parms_id()


def bottom_parms_id():
    """The level of every result: one 60-bit prime left, after the computation's last rescale."""
    return context().last_parms_id()


def last_prime(parms_id) -> int:
    """The prime a rescale at this level divides by (SEAL drops the last prime of the chain first)."""
    return context().get_context_data(parms_id).parms().coeff_modulus()[-1].value()


def rescaled_scale() -> float:
    """The scale of a depth-1 product after its rescale: SCALE^2 divided by the dropped 40-bit prime."""
    return SCALE * SCALE / last_prime(fresh_parms_id(1))


def galois_element(step: int) -> int:
    """SEAL's Galois element for a left rotation of the slot vector by ``step``."""
    return pow(_GALOIS_GENERATOR, step % SLOTS, 2 * POLY_DEGREE)


_SCRATCH = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
_scratch_lock = threading.Lock()
_scratch_counter = 0


def _scratch_file() -> Path:
    global _scratch_counter
    with _scratch_lock:
        _scratch_counter += 1
        return _SCRATCH / f"securealign-{os.getpid()}-{threading.get_ident()}-{_scratch_counter}.seal"


def save_bytes(obj) -> bytes:
    """Serialize a SEAL object (or a seeded ``Serializable``) to bytes.

    The Python binding only saves to a path, so this goes through a private file in memory-backed /dev/shm.
    """
    path = _scratch_file()
    try:
        obj.save(str(path))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


# SEAL's serialization header: magic, header size, version major/minor, compression mode, reserved, total size
_SEAL_HEADER = struct.Struct("<HBBBBHQ")
_SEAL_MAGIC = 0xA15E
_COMPRESSION = {int(seal.COMPR_MODE_TYPE.NONE): "none", int(seal.COMPR_MODE_TYPE.ZSTD): "zstd"}


def _payload(data: bytes) -> tuple[str, bytes]:
    """The compression mode and payload of a SEAL blob whose header accounts for every byte of it.

    SEAL reads only as many bytes as its header declares and ignores the rest, so anything appended (a secret key,
    say) would travel unnoticed; such a blob is refused here, as is a compression mode the protocol never uses.
    """
    if len(data) < _SEAL_HEADER.size:
        raise WireFormatError(f"SEAL object of {len(data)} bytes is shorter than its header")
    magic, header_size, _, _, mode, _, size = _SEAL_HEADER.unpack_from(data)
    if magic != _SEAL_MAGIC or header_size != _SEAL_HEADER.size:
        raise WireFormatError("not a SEAL serialization (bad magic or header size)")
    if size != len(data):
        raise WireFormatError(
            f"SEAL object declares {size:,} bytes but the blob holds {len(data):,}: trailing or missing bytes"
        )
    if mode not in _COMPRESSION:
        raise WireFormatError(f"SEAL compression mode {mode} is not one the protocol uses")
    return _COMPRESSION[mode], data[_SEAL_HEADER.size :]


def inflated(data: bytes, limit: int) -> bytes:
    """The members of a SEAL blob as SEAL will read them (decompressed), refused beyond ``limit`` bytes.

    SEAL inflates a compressed blob fully before it parses it, so a few KB of compressed zeros could make it
    allocate gigabytes; here the inflation stops at ``limit`` and trailing frames or bytes are refused.
    """
    mode, payload = _payload(data)
    if mode == "none":
        members = payload
    else:
        try:
            with zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=False) as reader:
                bounded = reader.read(limit + 1)  # the first frame, at most limit + 1 bytes of it
            if len(bounded) > limit:
                raise LimitExceededError(f"SEAL object inflates beyond {limit:,} bytes")
            frame = zstandard.ZstdDecompressor().decompressobj()
            members = frame.decompress(payload)  # the same frame again, now known to be small
        except zstandard.ZstdError as exc:
            raise WireFormatError(f"SEAL object is not valid zstd data: {exc}") from None
        if not frame.eof or frame.unused_data:
            raise WireFormatError("SEAL object holds bytes after its compressed data")
    if len(members) > limit:
        raise LimitExceededError(f"SEAL object inflates beyond {limit:,} bytes")
    return members


def load_bytes(factory: Callable[[], T], data: bytes) -> T:
    """Deserialize bytes into a new SEAL object; SEAL checks its own header and validity against ``context()``.

    Callers validate sizes and digests first (see ``wire``), and the blob's own header must account for all of
    its bytes: SEAL is never handed unchecked bytes.
    """
    _payload(data)
    obj = factory()
    path = _scratch_file()
    try:
        path.write_bytes(data)
        try:
            obj.load(context(), str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            raise WireFormatError(f"not a valid {type(obj).__name__} for the protocol's parameters: {exc}") from None
        return obj
    finally:
        path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def encoder() -> seal.CKKSEncoder:
    return seal.CKKSEncoder(context())


@functools.lru_cache(maxsize=1)
def evaluator() -> seal.Evaluator:
    return seal.Evaluator(context())


def encode(values: np.ndarray, parms_id, scale: float) -> seal.Plaintext:
    """A plaintext slot vector (real or complex) at a given level and scale, ready to multiply or add to a
    ciphertext there."""
    plain = seal.Plaintext()
    values = np.asarray(values)
    values = values.astype(np.complex128) if np.iscomplexobj(values) else values.astype(np.float64)
    encoder().encode(values.tolist(), parms_id, scale, plain)
    return plain


def key_id(galois_keys: bytes) -> str:
    """A session's key id: the digest of its serialized Galois keys, computed alike by client and provider."""
    return hashlib.sha256(galois_keys).hexdigest()[:32]


@dataclass(frozen=True)
class GaloisLayout:
    """How many bytes seeded Galois keys inflate to: ``base + per_key * count``.

    Measured once on genuine keys for these parameters, so nothing depends on a hard-coded key size.
    """

    base: int
    per_key: int


@functools.lru_cache(maxsize=1)
def galois_layout() -> GaloisLayout:
    keys = KeyPair.generate()
    one, two = (len(inflated(keys.galois_keys_bytes(steps, conjugate=False), 1 << 30)) for steps in ([1], [1, 2]))
    return GaloisLayout(2 * one - two, two - one)


def keys_memory(keys: seal.GaloisKeys) -> int:
    """The bytes the loaded keys' polynomials occupy in memory (their seeds expanded)."""
    return sum(
        pk.data().size() * pk.data().poly_modulus_degree() * pk.data().coeff_modulus_size() * 8
        for key in keys.data()
        for pk in key
    )


def load_galois_keys(data: bytes, steps: list[int], *, conjugate: bool = True) -> tuple[seal.GaloisKeys, int]:
    """Galois keys for exactly ``steps`` plus (if ``conjugate``) the conjugation, and the memory they occupy, or a
    refusal.

    Before SEAL parses anything, the inflated blob must be exactly as long as genuine keys for that many steps
    (no extra keys, no hidden bytes, no decompression bomb); after loading, the keys' Galois elements must be
    exactly those of the declared steps and the conjugation.
    """
    layout = galois_layout()
    size = len(inflated(data, layout.base + layout.per_key * (MAX_ROTATION_KEYS + 1)))
    count, rest = divmod(size - layout.base, layout.per_key)
    if rest or count < 1:
        raise WireFormatError(f"a blob inflating to {size:,} bytes holds no whole number of Galois keys")
    if count != len(steps) + conjugate:
        declared = f"{len(steps)} rotation steps" + (" and the conjugation" if conjugate else "")
        raise ParameterError(f"the context holds {count} Galois keys but declares {declared}")
    keys = load_bytes(seal.GaloisKeys, data)
    elements = {2 * index + 1 for index, key in enumerate(keys.data()) if key}  # SEAL stores element e at (e-1)/2
    expected = {galois_element(s) for s in steps} | ({CONJUGATION} if conjugate else set())
    if elements != expected or keys.size() != len(expected):
        raise ParameterError(
            "the context's Galois keys are not exactly those of its declared rotation steps"
            + (" and the conjugation" if conjugate else "")
        )
    return keys, keys_memory(keys)


def load_ciphertext(data: bytes, *, parms_id, scale: float) -> seal.Ciphertext:
    """A ciphertext from bytes, refused unless it has two parts and sits at the expected level and scale."""
    ct = load_bytes(seal.Ciphertext, data)
    if ct.size() != 2 or not ct.is_ntt_form():
        raise ParameterError(f"ciphertext has {ct.size()} parts; the protocol uses 2-part NTT-form ciphertexts")
    if ct.is_transparent():  # c1 = 0 decrypts to c0 under any key: a forger could choose the result
        raise ParameterError("ciphertext is transparent (it decrypts without a key), so it cannot be genuine")
    if ct.parms_id() != parms_id:
        raise ParameterError("ciphertext is at another modulus level than the protocol expects here")
    if not np.isclose(ct.scale, scale, rtol=1e-9):
        raise ParameterError(f"ciphertext scale 2^{np.log2(ct.scale):.2f} differs from 2^{np.log2(scale):.2f}")
    return ct


@functools.cache
def fresh_size(depth: int) -> int:
    """How many bytes a client's fresh seeded ciphertext for ``depth`` inflates to (measured once, like the keys)."""
    return len(inflated(KeyPair.generate().encrypt(np.zeros(SLOTS), depth), 1 << 30))


def load_fresh(data: bytes, depth: int, scale: float = SCALE) -> seal.Ciphertext:
    """A client's freshly encrypted ciphertext, refused unless it was serialized with a seed.

    A seeded ciphertext carries its random half as a seed that SEAL expands, so the client cannot choose that half.
    A client that could (say, a constant) would make the provider's products carry its weight polynomial in the
    half it returns; only circuit-private answers are re-randomised (``flooding``), so this is where the choice is
    taken away for every other one. ``scale``: the scale the query was encoded at (circuit-private classification
    queries use a larger one, see ``flooding.PrivateScales``).
    """
    size = fresh_size(depth)
    members = inflated(data, 2 * size)
    if len(members) != size:
        raise ParameterError(
            f"ciphertext inflates to {len(members):,} bytes, not the {size:,} of a fresh seeded one: the protocol "
            "takes only seeded ciphertexts (their random half derived from a seed) from clients"
        )
    # handed to SEAL uncompressed, so the bytes are inflated once (here, bounded), not twice
    magic, header_size, major, minor, _, reserved, _ = _SEAL_HEADER.unpack_from(data)
    header = _SEAL_HEADER.pack(
        magic, header_size, major, minor, int(seal.COMPR_MODE_TYPE.NONE), reserved, header_size + len(members)
    )
    return load_ciphertext(header + members, parms_id=fresh_parms_id(depth), scale=scale)


@functools.lru_cache(maxsize=1)
def public_key_size() -> int:
    """How many bytes a genuine public key inflates to (measured once, like the Galois keys)."""
    return len(inflated(KeyPair.generate().public_key_bytes(), 1 << 30))


def load_public_key(data: bytes) -> seal.Encryptor:
    """An encryptor for a client's public key, refused unless the blob is exactly one public key's size.

    TenSEAL does not bind SEAL's seeded ``Serializable<PublicKey>``, so the key travels whole (~0.36 MB): its
    random half is the client's own, which is why a circuit-private answer assumes an honestly generated key
    (docs/protocol.md, "What circuit privacy does not cover").
    """
    if len(inflated(data, 2 * public_key_size())) != public_key_size():
        raise ParameterError("the context's public key does not have the size of a public key for these parameters")
    key = load_bytes(seal.PublicKey, data)
    if key.data().size() != 2 or key.data().parms_id() != context().key_parms_id() or key.data().is_transparent():
        raise ParameterError("the context's public key is not a two-part key at the key level")
    return seal.Encryptor(context(), key)


def add(a: seal.Ciphertext, b: seal.Ciphertext) -> seal.Ciphertext:
    out = seal.Ciphertext()
    evaluator().add(a, b, out)
    return out


def real_part_doubled(ct: seal.Ciphertext, galois_keys: seal.GaloisKeys) -> seal.Ciphertext:
    """ct + conj(ct): twice the real part of every slot, with no trace of the imaginary parts."""
    conjugate = seal.Ciphertext()
    evaluator().complex_conjugate(ct, galois_keys, conjugate)
    return add(ct, conjugate)


def rotate(ct: seal.Ciphertext, step: int, galois_keys: seal.GaloisKeys) -> seal.Ciphertext:
    out = seal.Ciphertext()
    evaluator().rotate_vector(ct, step, galois_keys, out)
    return out


@dataclass
class KeyPair:
    """A CKKS secret key with what its holder needs to encrypt, decrypt and publish rotation keys.

    Encryption is symmetric (under the secret key): the ciphertext is serialized with a seed in place of its
    random half. The public key exists only so that the provider can re-randomise circuit-private answers.
    """

    secret_key: seal.SecretKey
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor
    keygen: seal.KeyGenerator

    @classmethod
    def generate(cls) -> KeyPair:
        keygen = seal.KeyGenerator(context())
        secret = keygen.secret_key()
        return cls(secret, seal.Encryptor(context(), secret), seal.Decryptor(context(), secret), keygen)

    def galois_keys_bytes(self, steps: list[int], *, conjugate: bool = True) -> bytes:
        """Seeded Galois keys for exactly these rotation steps (about 660 KB each) and, for classification
        contexts, the conjugation (see ``CONJUGATION``)."""
        elements = [galois_element(s) for s in steps] + ([CONJUGATION] if conjugate else [])
        return save_bytes(self.keygen.create_galois_keys(elements))

    def public_key_bytes(self) -> bytes:
        """The public encryption key (not seeded: TenSEAL binds no seeded public key), for re-randomising."""
        key = seal.PublicKey()
        self.keygen.create_public_key(key)
        return save_bytes(key)

    def encrypt(self, slots: np.ndarray, depth: int, scale: float = SCALE) -> bytes:
        """Encrypt a (real or complex) slot vector for a computation of ``depth`` multiplications; returns the seeded
        serialized ciphertext (SEAL encrypts at the plaintext's level, so a shallower computation sends less)."""
        return save_bytes(self.encryptor.encrypt_symmetric(encode(slots, fresh_parms_id(depth), scale)))

    def decrypt_products(self, blobs: tuple[bytes, ...], scale: float) -> list[np.ndarray]:
        """The complex slot vectors of serialized result ciphertexts (bottom level, at ``scale``); the imaginary
        parts serve as the key and noise check."""
        vectors = []
        for blob in blobs:
            plain = seal.Plaintext()
            self.decryptor.decrypt(load_ciphertext(blob, parms_id=bottom_parms_id(), scale=scale), plain)
            vectors.append(np.asarray(encoder().decode_complex(plain)))
        return vectors
