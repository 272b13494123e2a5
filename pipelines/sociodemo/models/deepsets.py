"""DeepSets + Time2Vec over each user's set of watched videos, with multi-task heads (the seed's GENAPON idea).

Per item (video): a learned video embedding, a category embedding, the watch share, log(1 + views) and
Time2Vec encodings of the hour of day (UTC) of its first and last view and of how long before the user's own
latest view it was last seen (relative to the user, so it means the same in any split or scoring week).
φ (an MLP) maps each item; masked mean and max pooling make the set a vector regardless of order and size;
ρ (an MLP) mixes it with log(1 + set size) and two heads give the sex logit and the four age-class logits; the
loss is BCE + CE. Sets are padded to the longest in the batch (at most ``max_items``) with a mask. Embedding
index 0 is padding and 1 is "unknown" (a video or category the model never saw; an empty set pools to zeros).
Trained on CPU for at most ``max_epochs`` (early stopping on the validation loss, ``patience`` epochs), one
thread and fixed seeds, keeping the state with the best validation loss: the same data and parameters give the
same model and metrics, however loaded the machine is. ``time_budget_s`` is only a safety cap (default an hour);
when it bites, the fit result says ``stopped = "time_budget"`` and the run is no longer reproducible.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.sociodemo.models.base import (
    N_AGE_CLASSES,
    SET_COLUMNS,
    Dataset,
    Predictions,
    clean_probabilities,
    read_model_json,
    write_model_json,
)

#: ``video_dropout``: share of a training set's videos shown as "unknown" each step (per-video embeddings
#: overfit small data; measured on 1.7k training users: contest score 1.71 without, 1.92 with 0.8).
DEFAULTS: dict = {"max_items": 64, "video_dim": 16, "category_dim": 8, "time_k": 8, "hidden": 64, "dropout": 0.2,
                  "video_dropout": 0.8, "lr": 3e-3, "weight_decay": 1e-5, "batch_size": 128, "max_epochs": 30,
                  "time_budget_s": 3600.0, "patience": 4, "seed": 42, "threads": 1}
PAD, UNKNOWN, OFFSET = 0, 1, 2
SECONDS_PER_DAY = 86_400
# One intra-op thread by default: the matrices are small, and on the shared 2-core machine two threads made each
# step ~20x slower under load (measured: a 128x64x69 linear 0.7 ms with one thread, 14 ms with two).


class Time2Vec(nn.Module):
    """Time2Vec (Kazemi et al. 2019): one linear component and ``k`` learnable periodic ones of a scalar time."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.periodic = nn.Linear(1, k)

    def forward(self, tau: torch.Tensor) -> torch.Tensor:
        tau = tau.unsqueeze(-1)
        return torch.cat([self.linear(tau), torch.sin(self.periodic(tau))], dim=-1)


class DeepSetsNet(nn.Module):
    def __init__(self, n_videos: int, n_categories: int, video_dim: int, category_dim: int, time_k: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        self.video = nn.Embedding(n_videos + OFFSET, video_dim, padding_idx=PAD)
        self.category = nn.Embedding(n_categories + OFFSET, category_dim, padding_idx=PAD)
        self.times = nn.ModuleList([Time2Vec(time_k) for _ in range(3)])  # first hour, last hour, days ago
        item_dim = video_dim + category_dim + 2 + 3 * (time_k + 1)
        self.phi = nn.Sequential(nn.Linear(item_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.sex_head = nn.Linear(hidden, 1)
        self.age_head = nn.Linear(hidden, N_AGE_CLASSES)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["mask"]  # (b, L) bool
        items = torch.cat([self.video(batch["video"]), self.category(batch["category"]),
                           batch["numeric"], *[t2v(batch["times"][..., i]) for i, t2v in enumerate(self.times)]],
                          dim=-1)
        h = self.phi(items)
        m = mask.unsqueeze(-1).to(h.dtype)
        count = m.sum(dim=1)
        mean = (h * m).sum(dim=1) / count.clamp(min=1)
        maxed = h.masked_fill(~mask.unsqueeze(-1), -1e4).max(dim=1).values
        maxed = torch.where(count > 0, maxed, torch.zeros_like(maxed))  # an empty set pools to zeros
        z = self.rho(torch.cat([mean, maxed, torch.log1p(count)], dim=-1))
        return self.sex_head(z).squeeze(-1), self.age_head(z)


def _tensors(data: Dataset, max_items: int, n_videos: int, n_categories: int) -> dict[str, np.ndarray]:
    """Padded arrays (n, L) of the user sets; L = the longest set, at most ``max_items``."""
    if data.sets is None:
        raise ValueError("DeepSetsModel needs the user sets")
    sets = data.sets
    lengths = np.array([min(len(v), max_items) for v in sets["video_idx"]], dtype=np.int64)
    n, width = len(sets), max(1, int(lengths.max(initial=0)))
    out = {"video": np.zeros((n, width), np.int64), "category": np.zeros((n, width), np.int64),
           "numeric": np.zeros((n, width, 2), np.float32), "times": np.zeros((n, width, 3), np.float32),
           "mask": np.zeros((n, width), bool)}
    columns = {c: sets[c].to_numpy() for c in SET_COLUMNS}
    for i, k in enumerate(lengths):
        if not k:
            continue
        video = np.asarray(columns["video_idx"][i][:k], dtype=np.int64)
        category = np.asarray(columns["category_idx"][i][:k], dtype=np.int64)
        out["video"][i, :k] = np.where((video >= 0) & (video < n_videos), video + OFFSET, UNKNOWN)
        out["category"][i, :k] = np.where((category >= 0) & (category < n_categories), category + OFFSET, UNKNOWN)
        out["numeric"][i, :k, 0] = np.asarray(columns["watch_share"][i][:k], dtype=np.float32)
        out["numeric"][i, :k, 1] = np.log1p(np.asarray(columns["views"][i][:k], dtype=np.float32))
        first = np.asarray(columns["first_ts"][i][:k], dtype=np.int64)
        last = np.asarray(columns["last_ts"][i][:k], dtype=np.int64)
        out["times"][i, :k, 0] = (first % SECONDS_PER_DAY) / SECONDS_PER_DAY
        out["times"][i, :k, 1] = (last % SECONDS_PER_DAY) / SECONDS_PER_DAY
        out["times"][i, :k, 2] = (last.max() - last) / SECONDS_PER_DAY / 7.0  # weeks before the user's latest
        out["mask"][i, :k] = True
    return out


def _batch(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, torch.Tensor]:
    width = max(1, int(arrays["mask"][idx].sum(axis=1).max(initial=0)))
    return {k: torch.from_numpy(np.ascontiguousarray(v[idx][:, :width])) for k, v in arrays.items()}


class DeepSetsModel:
    name = "deepsets"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown DeepSets param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.n_videos = 0
        self.n_categories = 0
        self.net: DeepSetsNet | None = None

    def _net(self) -> DeepSetsNet:
        p = self.params
        return DeepSetsNet(self.n_videos, self.n_categories, p["video_dim"], p["category_dim"], p["time_k"],
                           p["hidden"], p["dropout"])

    def _arrays(self, data: Dataset) -> dict[str, np.ndarray]:
        return _tensors(data, self.params["max_items"], self.n_videos, self.n_categories)

    def _losses(self, arrays: dict[str, np.ndarray], sex: np.ndarray, age: np.ndarray) -> float:
        """Mean validation loss (BCE + CE) without dropout."""
        assert self.net is not None
        self.net.eval()
        total, bce, ce = 0.0, nn.BCEWithLogitsLoss(reduction="sum"), nn.CrossEntropyLoss(reduction="sum")
        with torch.no_grad():
            for lo in range(0, len(sex), 1024):
                idx = np.arange(lo, min(lo + 1024, len(sex)))
                sex_logit, age_logit = self.net(_batch(arrays, idx))
                total += float(bce(sex_logit, torch.from_numpy(sex[idx]).float()))
                total += float(ce(age_logit, torch.from_numpy(age[idx]).long()))
        return total / max(len(sex), 1)

    def fit(self, train: Dataset, valid: Dataset) -> dict:
        started = time.perf_counter()
        p = self.params
        if train.sex is None or train.age_class is None or valid.sex is None or valid.age_class is None:
            raise ValueError("DeepSetsModel.fit needs targets on train and valid")
        torch.manual_seed(p["seed"])
        torch.set_num_threads(p["threads"])
        rng = np.random.default_rng(p["seed"])
        # The vocabulary is what training saw; anything beyond it is "unknown" at scoring time.
        self.n_videos = 1 + int(max((max(v) for v in train.sets["video_idx"] if len(v)), default=-1))
        self.n_categories = 1 + int(max((max(v) for v in train.sets["category_idx"] if len(v)), default=-1))
        self.net = self._net()
        tr, va = self._arrays(train), self._arrays(valid)
        tr_sex, tr_age = train.sex.astype(np.float32), train.age_class.astype(np.int64)
        va_sex, va_age = valid.sex.astype(np.float32), valid.age_class.astype(np.int64)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
        best_loss, best_state, best_epoch, stale, epochs, steps, stopped = math.inf, None, -1, 0, 0, 0, "max_epochs"
        history = []
        for epoch in range(p["max_epochs"]):
            self.net.train()
            order = rng.permutation(len(tr_sex))
            for lo in range(0, len(order), p["batch_size"]):
                idx = order[lo:lo + p["batch_size"]]
                batch = _batch(tr, idx)
                if p["video_dropout"] > 0:  # hide some videos as "unknown": the per-video embedding overfits
                    hide = batch["mask"] & (torch.rand(batch["video"].shape) < p["video_dropout"])
                    batch["video"] = torch.where(hide, torch.full_like(batch["video"], UNKNOWN), batch["video"])
                sex_logit, age_logit = self.net(batch)
                loss = (bce(sex_logit, torch.from_numpy(tr_sex[idx]))
                        + ce(age_logit, torch.from_numpy(tr_age[idx])))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                if time.perf_counter() - started > p["time_budget_s"]:
                    stopped = "time_budget"
                    break
            epochs = epoch + 1
            valid_loss = self._losses(va, va_sex, va_age)
            history.append(round(valid_loss, 5))
            if valid_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, stale = valid_loss, copy.deepcopy(self.net.state_dict()), epoch, 0
            else:
                stale += 1
            if stopped == "time_budget":
                break
            if stale >= p["patience"]:
                stopped = "early_stopping"
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()
        return {"iterations": steps, "epochs": epochs, "best_epoch": best_epoch + 1, "best_valid_loss": best_loss,
                "valid_loss_history": history, "stopped": stopped, "n_videos": self.n_videos,
                "seconds": round(time.perf_counter() - started, 3)}

    def predict(self, data: Dataset) -> Predictions:
        if self.net is None:
            raise RuntimeError("DeepSetsModel is not fitted")
        torch.set_num_threads(self.params["threads"])
        self.net.eval()
        arrays = self._arrays(data)
        p_male, p_age = [], []
        with torch.no_grad():
            for lo in range(0, len(data.uids), 1024):
                idx = np.arange(lo, min(lo + 1024, len(data.uids)))
                sex_logit, age_logit = self.net(_batch(arrays, idx))
                p_male.append(torch.sigmoid(sex_logit.double()).numpy())
                p_age.append(torch.softmax(age_logit.double(), dim=-1).numpy())
        if not p_male:
            return Predictions(uids=data.uids, p_male=np.zeros(0), p_age=np.zeros((0, N_AGE_CLASSES)))
        male, age = clean_probabilities(np.concatenate(p_male), np.concatenate(p_age))
        return Predictions(uids=data.uids, p_male=male, p_age=age)

    def save(self, folder: Path) -> None:
        if self.net is None:
            raise RuntimeError("DeepSetsModel is not fitted")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "state_dict.pt")
        config = {"params": self.params, "n_videos": self.n_videos, "n_categories": self.n_categories}
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        write_model_json(folder, self.name, **config)

    @classmethod
    def load(cls, folder: Path) -> DeepSetsModel:
        folder = Path(folder)
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.n_videos, model.n_categories = int(meta["n_videos"]), int(meta["n_categories"])
        model.net = model._net()
        model.net.load_state_dict(torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True))
        model.net.eval()
        return model
