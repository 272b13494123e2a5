"""What every socio-demographic model sees and returns, and how a saved model is found again.

A :class:`Dataset` holds rows aligned by ``viewer_uid``: the feature table (for table models), the user sets
(for set models) and, when training, the targets. Models are plain classes following :class:`SociodemoModel`;
each saves a ``model.json`` naming itself so :func:`load_model` can dispatch without the caller knowing which.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa

N_AGE_CLASSES = 4
#: List columns of the user sets (see :mod:`pipelines.sociodemo.user_sets`).
SET_COLUMNS = ("video_idx", "category_idx", "watch_share", "views", "first_ts", "last_ts")
MODEL_FILE = "model.json"


@dataclass
class Dataset:
    """What every model sees; rows aligned by ``viewer_uid``."""

    uids: np.ndarray
    features: pd.DataFrame | None
    sets: pd.DataFrame | None
    sex: np.ndarray | None = None  # 1 = male, 0 = female
    age_class: np.ndarray | None = None  # 0..3

    def __len__(self) -> int:
        return len(self.uids)

    def subset(self, mask: np.ndarray) -> Dataset:
        """The rows where ``mask`` is true (or at the given positions), same alignment."""
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)

        def rows(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            return None if frame is None else frame.iloc[idx].reset_index(drop=True)

        return Dataset(uids=self.uids[idx], features=rows(self.features), sets=rows(self.sets),
                       sex=None if self.sex is None else self.sex[idx],
                       age_class=None if self.age_class is None else self.age_class[idx])


@dataclass
class Predictions:
    """Per-user probabilities: ``p_male`` (n,) and ``p_age`` (n, 4) with rows summing to 1."""

    uids: np.ndarray
    p_male: np.ndarray
    p_age: np.ndarray

    def __post_init__(self) -> None:
        self.p_male = np.asarray(self.p_male, dtype=np.float64).reshape(-1)
        self.p_age = np.asarray(self.p_age, dtype=np.float64).reshape(len(self.p_male), N_AGE_CLASSES)

    def frame(self) -> pd.DataFrame:
        """One row per user: ``viewer_uid``, ``p_male``, ``p_age_0..3``, and the predicted labels."""
        out = pd.DataFrame({"viewer_uid": self.uids, "p_male": self.p_male})
        for k in range(N_AGE_CLASSES):
            out[f"p_age_{k}"] = self.p_age[:, k]
        out["sex"] = np.where(self.p_male >= 0.5, "male", "female")
        out["age_class"] = self.p_age.argmax(axis=1)
        return out


def clean_probabilities(p_male: np.ndarray, p_age: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities strictly inside (0, 1) with age rows summing to 1 (log losses stay finite)."""
    p_male = np.clip(np.asarray(p_male, dtype=np.float64), eps, 1 - eps)
    p_age = np.clip(np.asarray(p_age, dtype=np.float64), eps, None)
    return p_male, p_age / p_age.sum(axis=1, keepdims=True)


@runtime_checkable
class SociodemoModel(Protocol):
    name: str

    def fit(self, train: Dataset, valid: Dataset) -> dict: ...

    def predict(self, data: Dataset) -> Predictions: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> SociodemoModel: ...


def write_model_json(folder: Path, name: str, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_text(json.dumps({"name": name, **extra}, indent=2, ensure_ascii=False))


def read_model_json(folder: Path) -> dict:
    return json.loads((Path(folder) / MODEL_FILE).read_text())


def load_model(folder: Path) -> SociodemoModel:
    """The model saved in ``folder``, of whichever class its ``model.json`` names."""
    from pipelines.sociodemo.models.registry import MODELS

    name = read_model_json(Path(folder))["name"]
    if name not in MODELS:
        raise ValueError(f"{folder}: unknown model {name!r} (known: {sorted(MODELS)})")
    return MODELS[name].load(Path(folder))


def __getattr__(name: str):
    # MODELS lives in registry.py (the model modules import this one); exposed here lazily as the API promises.
    if name == "MODELS":
        from pipelines.sociodemo.models.registry import MODELS

        return MODELS
    raise AttributeError(name)


# --------------------------------------------------------------------------- loading
def _read_parquet(uri_or_path: str | Path) -> pd.DataFrame:
    """A Parquet file from a local path or an ``s3://`` URI (downloaded through boto3, like the data root)."""
    text = str(uri_or_path)
    if not text.startswith("s3://"):
        return pd.read_parquet(text.removeprefix("file://"))
    import boto3

    bucket, _, key = text.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("PIPELINES_S3_ENDPOINT") or None)
    with tempfile.TemporaryDirectory(prefix="sociodemo-model-") as tmp:
        local = Path(tmp) / "data.parquet"
        s3.download_file(bucket, key, str(local))
        return pd.read_parquet(local)


def encode_sex(values) -> np.ndarray:
    """1 = male, 0 = female, from ``male``/``female`` strings, booleans or 0/1."""
    values = pd.Series(values)
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        lowered = values.astype(str).str.lower()
        bad = ~lowered.isin(["male", "female"])
        if bad.any():
            raise ValueError(f"sex must be male/female, got e.g. {values[bad].head(3).tolist()}")
        return (lowered == "male").to_numpy(np.int64)
    return values.astype(np.int64).to_numpy()


def _empty_sets(uids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"viewer_uid": uids})
    for column in SET_COLUMNS:
        frame[column] = [[] for _ in range(len(uids))]
    return frame


def _align(frame: pd.DataFrame, uids: np.ndarray, fill_lists: bool) -> pd.DataFrame:
    """``frame`` (with ``viewer_uid``) reindexed to ``uids``; a user absent from it gets NaN (or empty lists)."""
    frame = frame.drop_duplicates("viewer_uid").set_index("viewer_uid")
    out = frame.reindex(pd.Index(uids, name="viewer_uid"))
    if fill_lists:
        missing = ~pd.Index(uids).isin(frame.index)
        if missing.any():
            for column in SET_COLUMNS:
                out.loc[missing, column] = pd.Series([[] for _ in range(int(missing.sum()))],
                                                     index=out.index[missing])
    return out.reset_index(drop=True)


def iter_datasets(features_path: str | Path, sets_path: str | Path | None = None,
                  chunk_users: int = 200_000) -> Iterator[Dataset]:
    """Every user of a local feature table, ``chunk_users`` at a time, with their sets (scoring's bounded-memory
    path: at most one chunk of features and sets is in memory, whatever the number of users)."""
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    sets_data = None if sets_path is None else pads.dataset(str(sets_path), format="parquet")
    for batch in pq.ParquetFile(str(features_path)).iter_batches(batch_size=chunk_users):
        features = batch.to_pandas()
        uids = features["viewer_uid"].to_numpy()
        sets = None
        if sets_data is not None:
            field = pads.field("viewer_uid")
            sets = sets_data.to_table(filter=field.isin(pa.array(uids))).to_pandas()
            sets = _align(sets, uids, fill_lists=True)
        yield Dataset(uids=uids, features=_align(features, uids, fill_lists=False), sets=sets)


def load_dataset(features_uri_or_path: str | Path | None, sets_path: str | Path | None = None,
                 targets: pd.DataFrame | None = None, uids=None) -> Dataset:
    """Read the feature table and/or user sets, aligned by ``viewer_uid``.

    Users: ``uids`` if given (a user missing from a table gets NaN features / an empty set); else the users of
    the feature table (or of the sets), restricted to the labelled ones when ``targets`` is given (a labelled
    user without events has no row to learn from). ``targets`` has ``viewer_uid``, ``sex`` (male/female or 1/0)
    and ``age_class`` (0..3), e.g. the staged targets.
    """
    if features_uri_or_path is None and sets_path is None:
        raise ValueError("load_dataset needs a feature table, user sets, or both")
    features = None if features_uri_or_path is None else _read_parquet(features_uri_or_path)
    sets = None if sets_path is None else _read_parquet(sets_path)
    base = features if features is not None else sets
    if uids is None:
        chosen = base["viewer_uid"].to_numpy()
        if targets is not None:
            chosen = chosen[np.isin(chosen, targets["viewer_uid"].to_numpy())]
    else:
        chosen = np.asarray(uids)
    sex = age = None
    if targets is not None:
        labels = targets.drop_duplicates("viewer_uid").set_index("viewer_uid").reindex(chosen)
        if labels["sex"].isna().any():
            raise ValueError(f"{int(labels['sex'].isna().sum())} user(s) have no target")
        sex = encode_sex(labels["sex"].to_numpy())
        age = labels["age_class"].astype(np.int64).to_numpy()
    if features is not None:
        features = _align(features, chosen, fill_lists=False)
    sets = _align(sets, chosen, fill_lists=True) if sets is not None else None
    return Dataset(uids=chosen, features=features, sets=sets, sex=sex, age_class=age)
