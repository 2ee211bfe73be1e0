"""Affine maps from a source model's embedding space into a target model's: ridge, least squares, Procrustes.

Ridge is solved in closed form from sufficient statistics (counts, sums, Z_B^T Z_B, Z_B^T Z_A) that are
accumulated over mini-batches, so a public corpus of any size streams through in bounded memory, and the
secure-fitting protocol can produce the same statistics under encryption.

This is the project's one ridge solver. Its penalty comes in one of two conventions, each spelled out in the
parameter's name: ``relative_lambda`` (this module's own, scaled by the mean source variance, so one grid suits
any embedding scale) or ``absolute_alpha`` (scikit-learn's ``Ridge(alpha=...)``: ``X^T X + alpha I`` on centred
data, which is the form the secure fit and the generation maps are specified in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.linalg import orthogonal_procrustes

# Ridge strengths tried by validation; relative to the mean eigenvalue of the source covariance, so one grid
# suits unit-norm and unnormalised embeddings alike.
LAMBDA_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


@dataclass
class AffineMap:
    """``z_a ≈ z_b @ W + b``: W is (d_b, d_a), b is (d_a,).

    ``kind`` names the fitter ("ridge", "lstsq", "procrustes") and ``lam`` the ridge strength it used, as a
    relative lambda (see :meth:`RidgeStats.solve`); the crypto provider and the app only need
    ``W`` and ``b``.
    """

    W: np.ndarray
    b: np.ndarray
    kind: str = "ridge"
    lam: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def source_dim(self) -> int:
        return int(self.W.shape[0])

    @property
    def target_dim(self) -> int:
        return int(self.W.shape[1])

    def apply(self, Z: np.ndarray) -> np.ndarray:
        """Map source embeddings (n, d_b) into the target space (n, d_a)."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.source_dim:
            raise ValueError(f"expected embeddings of shape (n, {self.source_dim}), got {Z.shape}")
        return (Z @ self.W + self.b).astype(np.float32)

    def save(self, path: Path, dtype: type = np.float32) -> None:
        """Write an npz (W, b, kind, lam); ``dtype=np.float16`` halves the size of committed assets at ~1e-3 error."""
        np.savez_compressed(path, W=self.W.astype(dtype), b=self.b.astype(dtype), kind=self.kind, lam=self.lam)

    @classmethod
    def load(cls, path: Path) -> AffineMap:
        """Read a map written by :meth:`save`, back in float64 whatever it was stored as."""
        with np.load(path) as data:
            return cls(
                data["W"].astype(np.float64), data["b"].astype(np.float64), str(data["kind"]), float(data["lam"])
            )


class RidgeStats:
    """Streaming sufficient statistics of (Z_B, Z_A) pairs for a closed-form ridge fit."""

    def __init__(self, source_dim: int, target_dim: int) -> None:
        self.n = 0
        self.sum_b = np.zeros(source_dim)
        self.sum_a = np.zeros(target_dim)
        self.bb = np.zeros((source_dim, source_dim))
        self.ba = np.zeros((source_dim, target_dim))

    def update(self, Zb: np.ndarray, Za: np.ndarray) -> RidgeStats:
        """Add one mini-batch of paired rows."""
        Zb, Za = np.asarray(Zb, dtype=np.float64), np.asarray(Za, dtype=np.float64)
        if Zb.ndim != 2 or Za.ndim != 2 or len(Zb) != len(Za):
            raise ValueError(f"need paired 2-D batches, got {Zb.shape} and {Za.shape}")
        if Zb.shape[1] != self.sum_b.size or Za.shape[1] != self.sum_a.size:
            raise ValueError(
                f"batch dims {Zb.shape[1]}->{Za.shape[1]} do not match {self.sum_b.size}->{self.sum_a.size}"
            )
        self.n += len(Zb)
        self.sum_b += Zb.sum(0)
        self.sum_a += Za.sum(0)
        self.bb += Zb.T @ Zb
        self.ba += Zb.T @ Za
        return self

    def solve(
        self, relative_lambda: float | None = None, *, absolute_alpha: float | None = None, kind: str = "ridge"
    ) -> AffineMap:
        """Centre the statistics and solve ``(C_bb + lam * s I) W = C_ba`` with ``s`` the mean source variance and
        ``lam`` the relative lambda; or, given scikit-learn's ``absolute_alpha`` instead, ``lam * s = alpha / n``
        (the same map as ``Ridge(alpha=absolute_alpha)``). The map records the relative lambda."""
        if (relative_lambda is None) == (absolute_alpha is None):
            raise ValueError("give exactly one of relative_lambda and absolute_alpha")
        if self.n < 2:
            raise ValueError("need at least two pairs to fit a map")
        mean_b, mean_a = self.sum_b / self.n, self.sum_a / self.n
        cov_bb = self.bb / self.n - np.outer(mean_b, mean_b)
        cov_ba = self.ba / self.n - np.outer(mean_b, mean_a)
        scale = max(np.trace(cov_bb) / len(cov_bb), 1e-12)
        lam = absolute_alpha / (self.n * scale) if relative_lambda is None else relative_lambda
        if lam > 0:
            W = np.linalg.solve(cov_bb + lam * scale * np.eye(len(cov_bb)), cov_ba)
        else:
            W = np.linalg.lstsq(cov_bb, cov_ba, rcond=None)[0]
        return AffineMap(W, mean_a - mean_b @ W, kind, lam, {"n": self.n})


def absolute_alpha(Zb: np.ndarray, relative_lambda: float) -> float:
    """The ridge penalty in scikit-learn's convention (``X^T X + alpha I`` on centred data) equal to this module's
    ``relative_lambda``; the secure fit takes it in that form, and only the client's own data sets it."""
    Zb = np.asarray(Zb, dtype=np.float64)
    return float(relative_lambda * max(Zb.var(axis=0).mean(), 1e-12) * len(Zb))


def _stats(Zb: np.ndarray, Za: np.ndarray, batch_size: int = 4096) -> RidgeStats:
    stats = RidgeStats(Zb.shape[1], Za.shape[1])
    for start in range(0, len(Zb), batch_size):
        stats.update(Zb[start : start + batch_size], Za[start : start + batch_size])
    return stats


def choose_lambda(
    Zb: np.ndarray, Za: np.ndarray, grid: tuple[float, ...] = LAMBDA_GRID, val_fraction: float = 0.2, seed: int = 0
) -> tuple[float, dict[float, float]]:
    """The grid value with the best held-out R^2 (variance-weighted, i.e. least total squared error) on a seeded
    validation split, and every value's score."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(Zb))
    n_val = max(1, int(len(Zb) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    stats = _stats(Zb[train], Za[train])
    from sklearn.metrics import r2_score  # on use: scikit-learn is ~0.9 s of the app's start-up, which needs none

    scores = {lam: r2_score(Za[val], stats.solve(lam).apply(Zb[val]), multioutput="variance_weighted") for lam in grid}
    return max(scores, key=scores.get), scores


def fit_ridge(
    Zb: np.ndarray, Za: np.ndarray, relative_lambda: float | None = None, *, absolute_alpha: float | None = None
) -> AffineMap:
    """Ridge map with the penalty in either convention (see :meth:`RidgeStats.solve`); with neither, the relative
    lambda is picked by validation (with fewer than 20 pairs, the grid's middle value)."""
    Zb, Za = _paired(Zb, Za)
    scores: dict[float, float] = {}
    if relative_lambda is None and absolute_alpha is None:
        relative_lambda, scores = choose_lambda(Zb, Za) if len(Zb) >= 20 else (1e-1, {})
    fitted = _stats(Zb, Za).solve(relative_lambda, absolute_alpha=absolute_alpha)
    fitted.info["validation_r2"] = {str(k): float(v) for k, v in scores.items()}
    return fitted


def fit_lstsq(Zb: np.ndarray, Za: np.ndarray) -> AffineMap:
    """Plain least squares (minimum-norm when under-determined)."""
    Zb, Za = _paired(Zb, Za)
    return _stats(Zb, Za).solve(0.0, kind="lstsq")


def procrustes_rotation(Zb: np.ndarray, Za: np.ndarray) -> np.ndarray:
    """The orthogonal Q (d x d, d = max dims) best rotating centred, norm-scaled, zero-padded Z_B onto Z_A."""
    Zb, Za = _paired(Zb, Za)
    d = max(Zb.shape[1], Za.shape[1])
    Xb, Xa = _pad(_standardise(Zb), d), _pad(_standardise(Za), d)
    return orthogonal_procrustes(Xb, Xa)[0]


def fit_procrustes(Zb: np.ndarray, Za: np.ndarray) -> AffineMap:
    """Orthogonal Procrustes as an affine map: centre, scale to unit Frobenius norm, pad, rotate, undo the
    target's scaling."""
    Zb, Za = _paired(Zb, Za)
    Q = procrustes_rotation(Zb, Za)
    norm_b = np.linalg.norm(Zb - Zb.mean(0)) or 1.0
    norm_a = np.linalg.norm(Za - Za.mean(0)) or 1.0
    W = Q[: Zb.shape[1], : Za.shape[1]] * (norm_a / norm_b)
    return AffineMap(W, Za.mean(0) - Zb.mean(0) @ W, "procrustes", 0.0, {"n": len(Zb)})


def fit_map(kind: str, Zb: np.ndarray, Za: np.ndarray) -> AffineMap:
    """Dispatch by name: "ridge", "lstsq" or "procrustes"."""
    fitters = {"ridge": fit_ridge, "lstsq": fit_lstsq, "procrustes": fit_procrustes}
    if kind not in fitters:
        raise ValueError(f"unknown map kind {kind!r}; valid kinds: {', '.join(fitters)}")
    return fitters[kind](Zb, Za)


def fit_quality(affine: AffineMap, Zb: np.ndarray, Za: np.ndarray) -> dict[str, float]:
    """Held-out quality: R^2, mean cosine to the true target, top-1 retrieval accuracy and mean rank (1 = best).

    R^2 is the fraction of the target's total variance explained (variance-weighted over dimensions): the plain
    per-dimension average explodes on the near-constant dimensions some encoders have.
    """
    Zb, Za = _paired(Zb, Za)
    pred = affine.apply(Zb).astype(np.float64)
    unit_pred = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)
    unit_true = Za / np.maximum(np.linalg.norm(Za, axis=1, keepdims=True), 1e-12)
    sims = unit_pred @ unit_true.T
    ranks = (sims > np.diag(sims)[:, None]).sum(1) + 1
    from sklearn.metrics import r2_score  # on use (see choose_lambda)

    return {
        "r2": float(r2_score(Za, pred, multioutput="variance_weighted")),
        "cosine": float(np.mean(np.sum(unit_pred * unit_true, axis=1))),
        "top1": float(np.mean(ranks == 1)),
        "mean_rank": float(np.mean(ranks)),
        "n": len(Zb),
    }


def _paired(Zb: np.ndarray, Za: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Zb, Za = np.asarray(Zb, dtype=np.float64), np.asarray(Za, dtype=np.float64)
    if Zb.ndim != 2 or Za.ndim != 2 or len(Zb) != len(Za):
        raise ValueError(f"need paired 2-D embeddings with the same number of rows, got {Zb.shape} and {Za.shape}")
    if len(Zb) < 2:
        raise ValueError("need at least two pairs to fit a map")
    return Zb, Za


def _standardise(Z: np.ndarray) -> np.ndarray:
    centred = Z - Z.mean(0)
    return centred / (np.linalg.norm(centred) or 1.0)


def _pad(Z: np.ndarray, d: int) -> np.ndarray:
    return np.pad(Z, ((0, 0), (0, d - Z.shape[1])))
