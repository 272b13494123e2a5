"""The floor and the ceiling every model is compared with on the same held-out attempts.

* ``chance``: a random ranking of the users (fixed seed): accuracy about 1 / users, EER about 0.5;
* ``majority``: the user with the most training attempts for everyone, the training shares as probabilities;
* ``oracle``: the generator's own likelihood (:class:`~pipelines.keystrokes.oracle.Oracle`) with the training
  shares as the prior, on generated data only: the ceiling.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from pipelines.keystrokes.features import Samples
from pipelines.keystrokes.models.base import KeystrokeModel


class ChanceModel(KeystrokeModel):
    name: ClassVar[str] = "chance"
    defaults: ClassVar[dict[str, Any]] = {"seed": 42}

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        return {}

    def _proba(self, samples: Samples) -> np.ndarray:
        rng = np.random.default_rng(self.params["seed"])
        return rng.dirichlet(np.ones(len(self.classes_)), size=len(samples))

    def _state(self) -> Any:
        return {}

    def _set_state(self, state: Any) -> None:
        pass


class MajorityModel(KeystrokeModel):
    name: ClassVar[str] = "majority"
    defaults: ClassVar[dict[str, Any]] = {}

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        counts = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
        self.prior_ = counts / counts.sum()
        return {"majority_user": self.classes_[int(np.argmax(counts))], "majority_share": float(self.prior_.max())}

    def _proba(self, samples: Samples) -> np.ndarray:
        return np.tile(self.prior_, (len(samples), 1))

    def _state(self) -> Any:
        return self.prior_

    def _set_state(self, state: Any) -> None:
        self.prior_ = state


class OracleModel(KeystrokeModel):
    """The generator's likelihood over the training users, with the training shares as the prior."""

    name: ClassVar[str] = "oracle"
    defaults: ClassVar[dict[str, Any]] = {"phi_points": 9}

    def __init__(self, profiles: list[dict], **params: Any) -> None:
        super().__init__(**params)
        self.profiles = profiles

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        from pipelines.keystrokes.oracle import Oracle

        prior = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
        self.oracle_ = Oracle(self.profiles, self.classes_, prior=prior, phi_points=self.params["phi_points"])
        return {}

    def _proba(self, samples: Samples) -> np.ndarray:
        return self.oracle_.predict_proba(list(zip(samples.chars, samples.times_us, strict=True)))
