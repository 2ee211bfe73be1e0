"""Circuit privacy for a result that one party computed and the other decrypts: re-randomise it with a fresh
public-key encryption of zero, and flood its noise with fresh Gaussian noise sized from a measured bound.

Why. A result is otherwise a deterministic function of the query ciphertext, the key-switching keys and the
computing party's plaintexts: the key holder can recompute it for a guessed plaintext and compare byte for byte,
and the decrypted noise (rescale rounding, key switching, the query's own noise times the weights) is a function
of the weights too. Adding ``Enc_pk(0)`` makes the second half fresh RLWE randomness (computationally uniform);
adding Gaussian noise much larger than the evaluation noise makes the decryption statistically independent of
which weights produced it, beyond the answer itself.

How much. Write a decrypted result (slot domain, both real and imaginary parts) as answer + e + f, with e the
evaluation noise and f the flood. For two candidate computations with the same answer, the key holder's view
differs only by e1 - e2, so by Pinsker its advantage is at most sqrt(KL / 2), with KL the Kullback-Leibler
divergence of the two Gaussians f + e1 and f + e2 (the encoder's rounding of f and the encryption of zero are
post-processing that does not depend on the weights). The decoding map between slots and coefficients is a scaled
orthogonal one, so iid Gaussian slots are iid Gaussian coefficients and the KL is the same in either domain.

The flood has two parts, because a classification result's structure has two parts:

- a coset part: one Gaussian per output, copied into every slot of its coset, scaled by the output's blinding
  factor r (label-only answers; r = 1 for logits). It covers the coset means of the evaluation noise, which after
  the all-reduce carry the query's noise times the (blinded) weights. Scaling with r keeps a blinded margin's
  signal-to-noise ratio that of the unblinded one, and one sample per output cannot tell r;
- an iid part: independent Gaussian noise on the real and imaginary part of every slot, for everything else
  (the real residual around each coset mean, every imaginary part).

With B_c a bound on the L2 norm of the coset means divided by their factors and B_a one on the L2 norm of the
rest, two candidates differ by at most 2 B_c and 2 B_a, and over tau answers decrypted by one key
KL <= tau (4 B_c^2 / (2 s_c^2) + 4 B_a^2 / (2 s_a^2)). The flood std is ``policy.factor * B`` for each part, with
factor = 2^(s/2 + 1) sqrt(tau), which makes KL <= 2^-s and the advantage at most 2^-(s + 1)/2 after tau answers.

OpenFHE's NOISE_FLOODING_DECRYPT (the reference design) floods at decryption, with std sqrt(12 tau) 2^(s/2) times
a noise estimate taken from the imaginary slots of a run on fresh keys. Here the party that computed the result
floods before it leaves (the key holder cannot be trusted to flood against itself); the bound is measured with
the computing party's own fresh keys on exact reference values (every slot, real and imaginary part, against the
plaintext twin of the algorithm), as L2 norms rather than a std, times a safety factor, and for classification on
a public stand-in of the head (the flood's std is visible, so it must not depend on the weights); and the flood
follows the result's coset structure so that blinded label answers keep their blinding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from securealign.crypto import ckks
from securealign.crypto.errors import ParameterError, QueryBudgetError

# Measured evaluation noise is multiplied by this before it sizes a flood: the bound is a maximum over a few
# calibration runs, and the L2 norms over thousands of slots vary by a few percent between runs.
SAFETY = 2.0


@dataclass(frozen=True)
class FloodPolicy:
    """The statistical security parameter ``s`` and the number ``tau`` of flooded answers one key may decrypt.

    s = 30 is OpenFHE's default for its noise-flooding mode; tau is enforced by the provider as a per-key budget
    of circuit-private answers (a client opens a session with fresh keys after tau of them).
    """

    s: int = 30
    tau: int = 16

    def __post_init__(self) -> None:
        if not 8 <= self.s <= 128 or not 1 <= self.tau <= 1 << 20:
            raise ParameterError(f"flooding needs 8 <= s <= 128 and 1 <= tau <= 2^20, got s={self.s}, tau={self.tau}")

    @property
    def factor(self) -> float:
        """Flood std per unit of noise bound: 2^(s/2 + 1) sqrt(tau) (see the module docstring)."""
        return 2.0 ** (self.s / 2 + 1) * math.sqrt(self.tau)

    def to_dict(self) -> dict:
        return {"s": self.s, "tau": self.tau}


DEFAULT_POLICY = FloodPolicy()


@dataclass(frozen=True)
class NoiseBound:
    """Bounds on the evaluation noise of one computation, in result slot units (L2 norms, safety included)."""

    coset: float  # the outputs' coset means of the real parts, each divided by its blinding factor
    residual: float  # everything else: real parts around their coset means, and every imaginary part

    def sigmas(self, policy: FloodPolicy) -> tuple[float, float]:
        """(coset std, iid std) of the flood for this bound under ``policy``."""
        return policy.factor * self.coset, policy.factor * self.residual


def gaussian(n: int) -> np.ndarray:
    """n standard normal samples from the operating system's CSPRNG (Box-Muller on 53-bit uniforms).

    numpy's generators are not cryptographic: a key holder that saw enough flood samples could predict the rest.
    """
    half = (n + 1) // 2
    words = np.frombuffer(os.urandom(16 * half), dtype=np.uint64).reshape(2, half) >> np.uint64(11)
    u1 = (words[0].astype(np.float64) + 1.0) / 2.0**53  # (0, 1]: log is finite
    u2 = words[1].astype(np.float64) / 2.0**53
    radius = np.sqrt(-2.0 * np.log(u1))
    return np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:n]


def complex_gaussian(n: int, sigma: float) -> np.ndarray:
    """n complex samples with independent real and imaginary parts of std ``sigma`` each."""
    values = gaussian(2 * n) * sigma
    return values[:n] + 1j * values[n:]


def rerandomise_and_flood(ct: seal.Ciphertext, encryptor: seal.Encryptor, noise: np.ndarray) -> None:
    """Add a fresh public-key encryption of zero at ``ct``'s level and the slot vector ``noise`` (complex) to
    ``ct``, in place: the shared last step of every circuit-private result."""
    zero = seal.Ciphertext()
    encryptor.encrypt_zero(ct.parms_id(), zero)
    zero.scale = ct.scale
    ev = ckks.evaluator()
    ev.add_inplace(ct, zero)
    ev.add_plain_inplace(ct, ckks.encode(np.asarray(noise, dtype=np.complex128), ct.parms_id(), ct.scale))


def public_row_norm(matrix: np.ndarray) -> float:
    """The smallest power of two at or above a matrix's largest row norm: all a flood's size may depend on, beyond
    the layout (floods are sized from a stand-in with rows of this norm, because their std is visible)."""
    return 2.0 ** math.ceil(math.log2(max(float(np.max(np.linalg.norm(matrix, axis=1))), 2.0**-20)))


def stand_in(shape: tuple[int, int], row_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """A random (matrix, bias) of ``shape`` whose rows all have norm ``row_norm`` and whose bias is of that size:
    the public stand-in a flood is sized from."""
    rng = np.random.default_rng()
    matrix = rng.normal(size=shape)
    matrix *= row_norm / np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix, rng.uniform(-row_norm, row_norm, size=shape[0])


def iid_bound(errors: list[np.ndarray]) -> float:
    """The L2 norm of slot errors (real and imaginary parts): the bound of a computation floods without a coset
    structure (vocabulary head, cross-products)."""
    return float(np.sqrt(sum(np.sum(np.abs(e) ** 2) for e in errors)))


def max_flood_deviation(sigma: float) -> float:
    """How far from its noiseless value an iid-flooded slot may be: 10 sigma, which a genuine result exceeds with
    probability below 1e-17 per slot, while a foreign key or altered bytes decrypt to values far beyond it."""
    return 10.0 * sigma


# Circuit-private classification queries are encrypted at a larger scale than SCALE: the query's own encryption
# noise times the weights is the largest evaluation noise left once the all-reduce runs before the rescale (its
# key switching is then divided by the 40-bit prime), and the flood is sized from it.
PRIVATE_QUERY_SCALE = 2.0**46


def private_result_scale(output_bits: int) -> float:
    """The result scale that leaves room for outputs below 2^output_bits on the last prime (one bit spare): the
    result sits on the one 60-bit prime, where |output| * scale must stay below 2^59, flood included."""
    return 2.0 ** (58 - output_bits)


def private_weight_scale(output_bits: int) -> float:
    """The weights' scale so that query scale * weight scale / dropped prime is the private result scale."""
    top = ckks.fresh_parms_id(1)
    return private_result_scale(output_bits) * ckks.last_prime(top) / PRIVATE_QUERY_SCALE


class IidFlood:
    """The flood of a result without a coset structure (vocabulary logits, cross-products): iid Gaussian real and
    imaginary parts in every slot, sized from the L2 norm of the evaluation noise measured once with the computing
    party's own keys, and a count of the answers one key has had (at most ``policy.tau``)."""

    def __init__(self, policy: FloodPolicy, bound: float) -> None:
        self.policy, self.bound, self.answers = policy, bound, 0

    @classmethod
    def measure(cls, policy: FloodPolicy, noise: Callable[[ckks.KeyPair], list[np.ndarray]], trials: int = 2):
        """``noise(keys)`` runs the computation once under ``keys`` and returns its slot errors (decrypted minus
        exact); the bound is the largest L2 norm over ``trials`` runs, times ``SAFETY``."""
        keys = ckks.KeyPair.generate()
        return cls(policy, SAFETY * max(iid_bound(noise(keys)) for _ in range(trials)))

    @property
    def sigma(self) -> float:
        return self.policy.factor * self.bound

    def max_deviation(self) -> float:
        return max_flood_deviation(self.sigma)

    def apply(self, ct: seal.Ciphertext, encryptor: seal.Encryptor) -> None:
        """Re-randomise and flood one result ciphertext."""
        rerandomise_and_flood(ct, encryptor, complex_gaussian(ckks.SLOTS, self.sigma))

    def charge(self) -> None:
        """Count one answer against this key, refusing beyond tau (the flood is sized for tau answers per key)."""
        if self.answers >= self.policy.tau:
            raise QueryBudgetError(
                f"these keys have decrypted {self.policy.tau} flooded answers (the flood is sized for that many): "
                "send fresh keys"
            )
        self.answers += 1
