"""The baselines the contract benchmark runs beside the shipped model, in the same process.

``popularity`` (training counts), ``EASE`` (Steck 2019: closed-form item-item, one ridge
penalty) and implicit ALS (the ``implicit`` package, Hu et al. 2008). Each is fitted on an
:class:`~spotlight_sagemaker.core.Interactions` and scores with ``score_users(user_idx)``, so
``core.evaluate`` ranks it exactly as it ranks our model.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from spotlight_sagemaker.core import Interactions


def user_item_matrix(train: Interactions) -> sp.csr_matrix:
    """Binary users x items CSR matrix of ``train``."""
    ones = np.ones(len(train), dtype=np.float32)
    shape = (train.num_users, train.num_items)
    return sp.csr_matrix((ones, (train.user_ids, train.item_ids)), shape=shape)


class EASE:
    """Embarrassingly Shallow Autoencoder: B = I - P diag(1/diag P), P = (X'X + lambda I)^-1,
    diag(B) = 0; scores = X B. Items without training interactions get zero columns (they are
    left out of the inverse, which they would not change)."""

    def __init__(self, train: Interactions, lam: float) -> None:
        self.X = user_item_matrix(train)
        self.active = np.flatnonzero(np.asarray(self.X.sum(0)).ravel() > 0)
        Xa = self.X[:, self.active]
        gram = torch.from_numpy((Xa.T @ Xa).toarray().astype(np.float32))
        gram.diagonal().add_(lam)
        P = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        B = -P / P.diagonal()[None, :]
        B.diagonal().zero_()
        self.B = B
        self.Xa = Xa
        self.num_items = train.num_items

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        rows = torch.from_numpy(self.Xa[user_idx].toarray())
        out = np.full((len(user_idx), self.num_items), -1e9, dtype=np.float32)
        out[:, self.active] = (rows @ self.B).numpy()
        return out


class ALS:
    """implicit's AlternatingLeastSquares (CPU) on the binary matrix, confidence 1 + alpha."""

    def __init__(
        self,
        train: Interactions,
        factors: int,
        regularization: float,
        alpha: float,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self.model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=0,
        )
        self.model.fit(user_item_matrix(train), show_progress=False)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        return self.model.user_factors[user_idx] @ self.model.item_factors.T
