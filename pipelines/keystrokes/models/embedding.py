"""Metric learning for 1,000× more users (both seeds' question), in the spirit of TypeNet.

A network maps an attempt to a unit vector: by default a learnt linear map of the standardised feature table
(per-position latencies, word times, speed, error habits; ``layers`` > 0 puts an MLP in front), or
(``encoder="sequence"``) the GRU of :class:`~pipelines.keystrokes.models.nets.SequenceEncoder` over the raw
events. Measured on 1,000 users unseen in training, enrolled from 5 attempts each (encoder trained on 1,000
other users): the linear map identified 24% of attempts at top-1, a 2-layer MLP 11%, the GRU encoder 5% and
plain within-user whitening of the features (no learning) 21% (the MLP and the GRU learn the training users
rather than what separates users in general). It is trained with a
supervised contrastive loss (a soft triplet loss over whole batches of ``users_per_batch`` users ×
``samples_per_user`` attempts), so attempts of one user end up closer than anyone else's. The output layer
does not grow with the number of users: a user is **enrolled** by the mean of their attempts' embeddings (the
gallery), an attempt is identified by its nearest enrolled users (cosine similarity), and a new user enrols
without retraining (:meth:`EmbeddingModel.enrol`).

Search is exact (chunked matrix products, exact probabilities) up to ``ann_threshold`` enrolled users and an
HNSW index (hnswlib) beyond it, whose probabilities are normalised over the ``ann_candidates`` nearest users
only. Similarities become probabilities by a softmax whose scale is fitted (temperature scaling) on the
training attempts, each compared with its own user's mean *without itself* (leave-one-out), so the scale
reflects unseen attempts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from pipelines.keystrokes.features import Samples
from pipelines.keystrokes.models.base import KeystrokeModel, ModelFitError, fit_temperature
from pipelines.keystrokes.models.nets import Budget, SequenceEncoder, batch, seed_everything, torch_threads


class EmbeddingNet(nn.Module):
    """An attempt → a unit vector: an MLP over the standardised feature table (``encoder="features"``) or the
    GRU over the raw events (``encoder="sequence"``), then a projection."""

    def __init__(self, encoder: str, n_features: int, layers: int, hidden: int, char_dim: int, position_dim: int,
                 bidirectional: bool, dim: int, dropout: float) -> None:
        super().__init__()
        self.kind = encoder
        if encoder == "features":
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("scale", torch.ones(n_features))
            if layers:
                width, blocks, size = 4 * hidden, [], n_features
                for _ in range(layers):
                    blocks += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
                    size = width
                self.body = nn.Sequential(*blocks)
            else:  # a learnt linear metric (what within-user whitening would be, fitted by the loss)
                width, self.body = n_features, nn.Identity()
        elif encoder == "sequence":
            self.body = SequenceEncoder(hidden=hidden, char_dim=char_dim, position_dim=position_dim,
                                        bidirectional=bidirectional)
            width = self.body.out_dim
        else:
            raise ValueError(f"encoder must be 'features' or 'sequence', not {encoder!r}")
        self.project = nn.Linear(width, dim) if encoder == "features" and not layers else \
            nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, dim))

    def forward(self, *inputs):
        if self.kind == "features":
            (x,) = inputs
            h = self.body(((x - self.mean) / self.scale).clamp(-6.0, 6.0))
        else:
            h = self.body(*inputs)
        return nn.functional.normalize(self.project(h), dim=-1)


def supervised_contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): each attempt's other attempts of the same user should be its nearest, among
    everything in the batch. A triplet-style loss over the whole batch at once (every positive against every
    negative, softly), which unlike batch-hard triplets does not collapse at the start of training."""
    sims = emb @ emb.T / temperature
    eye = torch.eye(len(labels), dtype=torch.bool)
    sims = sims.masked_fill(eye, -1e9)
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(dim=1)
    has = count > 0
    if not has.any():
        return emb.sum() * 0.0
    return -((log_prob * positive).sum(dim=1)[has] / count[has]).mean()


#: The leave-one-out temperature uses at most this many (attempt, user) similarities (80 MB of float32) ...
LOO_MAX_CELLS = 20_000_000
#: ... and never fewer than this many attempts.
LOO_MIN_ATTEMPTS = 2_000

_BLAS = None


def one_blas_thread_cached():
    """BLAS limited to one thread, as every model's fit and prediction is (``base.one_blas_thread``), with the
    threadpoolctl controller built once: building one costs about 3 ms of CPU, more than the exact search of one
    attempt among 10,000 users. Without the limit a single-attempt search ran on two OpenBLAS threads and took
    13-15x the CPU (3.7-4.4 ms against 0.29-0.30 ms at 10,000 users) on the loaded 2-core machine."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class EmbeddingModel(KeystrokeModel):
    name: ClassVar[str] = "embedding"
    defaults: ClassVar[dict[str, Any]] = {
        "encoder": "features", "layers": 0, "epochs": 40, "hidden": 64, "char_dim": 16, "position_dim": 8,
        "bidirectional": False, "dim": 64, "dropout": 0.1, "temperature": 0.05, "lr": 3e-3, "weight_decay": 1e-5,
        "users_per_batch": 256, "samples_per_user": 4, "seed": 42, "threads": 1, "time_cap_s": 3600.0,
        "ann_threshold": 50_000, "ann_candidates": 50, "hnsw_m": 32, "hnsw_ef": 128}

    # ------------------------------------------------------------------ network
    def _net(self) -> EmbeddingNet:
        from pipelines.keystrokes.features import FEATURE_NAMES

        p = self.params
        return EmbeddingNet(p["encoder"], len(FEATURE_NAMES), p["layers"], p["hidden"], p["char_dim"],
                            p["position_dim"], p["bidirectional"], p["dim"], p["dropout"])

    def _inputs(self, samples: Samples):
        """What the network reads: the feature table (float32) or the padded event sequences."""
        return (samples.table.astype(np.float32),) if self.params["encoder"] == "features" else samples.seq

    @staticmethod
    def _batch(inputs, idx: np.ndarray):
        if len(inputs) == 1:
            return (torch.from_numpy(np.ascontiguousarray(inputs[0][idx])),)
        return batch(inputs, idx)

    def embed(self, samples: Samples) -> np.ndarray:
        """Unit vectors (n, dim) of the attempts."""
        if len(samples) == 0:
            return np.zeros((0, self.params["dim"]), dtype=np.float32)
        inputs = self._inputs(samples)
        n, out = len(samples), []
        with torch_threads(self.params["threads"]), torch.no_grad():
            for lo in range(0, n, 2048):
                out.append(self.net_(*self._batch(inputs, np.arange(lo, min(lo + 2048, n)))).float().numpy())
        return l2_normalise(np.concatenate(out))

    def _fit(self, train: Samples, y: np.ndarray) -> dict:
        p = self.params
        by_user = [np.flatnonzero(y == c) for c in range(len(self.classes_))]
        pairable = np.array([c for c, members in enumerate(by_user) if len(members) >= 2])
        if len(pairable) < 2:
            raise ValueError("the embedding model needs at least two users with two attempts each")
        per_batch = min(int(p["users_per_batch"]), len(pairable))
        k = int(p["samples_per_user"])
        steps_per_epoch = max(1, int(np.ceil(len(y) / (per_batch * k))))
        with torch_threads(p["threads"]):
            seed_everything(p["seed"])
            self.net_ = self._net()
            inputs = self._inputs(train)
            if p["encoder"] == "features":  # standardisation learnt from the training attempts, saved with the net
                self.net_.mean.copy_(torch.from_numpy(inputs[0].mean(axis=0)))
                self.net_.scale.copy_(torch.from_numpy(inputs[0].std(axis=0).clip(min=1e-6)))
            optimiser = torch.optim.Adam(self.net_.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
            rng = np.random.default_rng(p["seed"])
            budget, losses, epochs = Budget(p["time_cap_s"]), [], 0
            self.net_.train()
            for _ in range(int(p["epochs"])):
                if budget.exceeded():
                    break
                total = 0.0
                for _ in range(steps_per_epoch):
                    users = rng.choice(pairable, size=per_batch, replace=False)
                    idx = np.concatenate([rng.choice(by_user[u], size=k, replace=len(by_user[u]) < k) for u in users])
                    emb = self.net_(*self._batch(inputs, idx))
                    loss = supervised_contrastive_loss(emb, torch.from_numpy(y[idx]), p["temperature"])
                    optimiser.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                    optimiser.step()
                    total += float(loss.detach())
                losses.append(total / steps_per_epoch)
                epochs += 1
            self.net_.eval()
        if losses and not np.isfinite(losses[-1]):
            raise ModelFitError(f"embedding: training loss is {losses[-1]}")
        emb = self.embed(train)
        self._set_gallery(self.classes_, *self._means(emb, y, len(self.classes_)))
        self.scale_ = self._loo_scale(emb, y)
        return {"epochs": epochs, "epochs_budget": int(p["epochs"]), "hit_time_cap": budget.hit,
                "steps_per_epoch": steps_per_epoch, "final_train_loss": round(losses[-1], 5) if losses else None,
                "temperature_scale": self.scale_, "enrolled": len(self.classes_)}

    @staticmethod
    def _means(emb: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        sums = np.zeros((n, emb.shape[1]), dtype=np.float64)
        np.add.at(sums, y, emb)
        counts = np.bincount(y, minlength=n)
        return l2_normalise(sums), counts

    def _loo_scale(self, emb: np.ndarray, y: np.ndarray) -> float:
        """Temperature from the training attempts against gallery means that leave each attempt out: at most
        ``LOO_MAX_CELLS`` similarities (a seeded sample of attempts), since at 2,941 users every one of 78,000
        attempts against every user took the fit past 6 GiB."""
        n = len(self.classes_)
        sums = np.zeros((n, emb.shape[1]), dtype=np.float64)
        np.add.at(sums, y, emb)
        counts = np.bincount(y, minlength=n)
        keep = np.flatnonzero(counts[y] >= 2)
        if len(keep) < 2:
            return 10.0
        most = max(LOO_MIN_ATTEMPTS, LOO_MAX_CELLS // max(1, n))
        if len(keep) > most:  # one scalar to fit: a seeded sample of attempts is plenty, and bounds the memory
            keep = np.sort(np.random.default_rng(self.params["seed"]).choice(keep, size=most, replace=False))
        e, yy = emb[keep], y[keep]
        sims = e @ self.gallery_.T
        own = sums[yy] - e
        own = own / np.linalg.norm(own, axis=1, keepdims=True).clip(min=1e-12)
        sims[np.arange(len(yy)), yy] = (e * own).sum(axis=1)
        return fit_temperature(sims, yy, bounds=(1.0, 200.0))

    # ------------------------------------------------------------------ gallery
    def _set_gallery(self, labels: list[str], vectors: np.ndarray, counts: np.ndarray) -> None:
        self.classes_ = list(labels)
        self.gallery_ = l2_normalise(np.asarray(vectors, dtype=np.float32))
        self.counts_ = np.asarray(counts, dtype=np.int64)
        self._index = None

    def enrol(self, labels, samples: Samples) -> dict[str, np.ndarray]:
        """Add (or replace) users from their attempts, without retraining: returns each user's new vector."""
        emb = self.embed(samples)
        labels = np.asarray(labels, dtype=object)
        vectors = {}
        for label in dict.fromkeys(labels.tolist()):
            vectors[label] = l2_normalise(emb[labels == label].mean(axis=0, keepdims=True))[0]
        self.add_enrolled(list(vectors), np.stack(list(vectors.values())),
                          np.array([(labels == lab).sum() for lab in vectors]))
        return vectors

    def add_enrolled(self, labels: list[str], vectors: np.ndarray, counts: np.ndarray) -> None:
        """Put given mean vectors into the gallery (enrolments kept elsewhere, e.g. in PostgreSQL)."""
        index = {c: i for i, c in enumerate(self.classes_)}
        gallery, all_counts, classes = list(self.gallery_), list(self.counts_), list(self.classes_)
        for label, vector, count in zip(labels, l2_normalise(np.asarray(vectors)), counts, strict=True):
            if label in index:
                gallery[index[label]], all_counts[index[label]] = vector, int(count)
            else:
                index[label] = len(classes)
                classes.append(label)
                gallery.append(vector)
                all_counts.append(int(count))
        self._set_gallery(classes, np.stack(gallery), np.array(all_counts))

    @property
    def uses_ann(self) -> bool:
        return len(self.classes_) >= int(self.params["ann_threshold"])

    def ann_index(self):
        """The HNSW index of the gallery (built on first use; inner product of unit vectors = cosine)."""
        if self._index is None:
            import hnswlib

            p = self.params
            index = hnswlib.Index(space="ip", dim=self.gallery_.shape[1])
            index.init_index(max_elements=len(self.classes_), ef_construction=200, M=p["hnsw_m"],
                             random_seed=p["seed"])
            index.set_num_threads(max(1, int(p["threads"])))
            index.add_items(self.gallery_, np.arange(len(self.classes_)))
            index.set_ef(max(int(p["hnsw_ef"]), int(p["ann_candidates"])))
            self._index = index
        return self._index

    # ------------------------------------------------------------------ prediction
    def _proba(self, samples: Samples, chunk: int = 2048) -> np.ndarray:
        """The softmax over every enrolled user, in row chunks written into one float64 matrix."""
        from pipelines.keystrokes.models.base import softmax

        emb = self.embed(samples)
        out = np.empty((len(emb), len(self.classes_)))
        for lo in range(0, len(emb), chunk):
            out[lo: lo + chunk] = softmax((emb[lo: lo + chunk] @ self.gallery_.T).astype(np.float64), self.scale_)
        return out

    def top_k_embedded(self, emb: np.ndarray, k: int = 3, chunk: int = 1024, exact: bool | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Indices (n, k) of the nearest enrolled users and their probabilities, from unit vectors."""
        k = min(k, len(self.classes_))
        exact = (not self.uses_ann) if exact is None else exact
        if not exact:
            m = min(len(self.classes_), max(k, int(self.params["ann_candidates"])))
            idx, dist = self.ann_index().knn_query(emb, k=m)
            sims = 1.0 - dist.astype(np.float64)  # hnswlib's "ip" distance is 1 - <a, b>
            z = sims * self.scale_
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            return idx[:, :k].astype(np.int64), p[:, :k]
        out_idx, out_p = np.empty((len(emb), k), dtype=np.int64), np.empty((len(emb), k))
        with one_blas_thread_cached():
            for lo in range(0, len(emb), chunk):
                z = (emb[lo: lo + chunk] @ self.gallery_.T).astype(np.float64) * self.scale_
                top = np.argpartition(-z, k - 1, axis=1)[:, :k] if k < z.shape[1] else \
                    np.tile(np.arange(k), (len(z), 1))
                order = np.argsort(-np.take_along_axis(z, top, axis=1), axis=1, kind="stable")
                top = np.take_along_axis(top, order, axis=1)
                zmax = z.max(axis=1, keepdims=True)
                log_norm = zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
                out_idx[lo: lo + len(z)] = top
                out_p[lo: lo + len(z)] = np.exp(np.take_along_axis(z, top, axis=1) - log_norm)
        return out_idx, out_p

    def top_k(self, samples: Samples, k: int = 3) -> tuple[list[list[str]], np.ndarray]:
        idx, p = self.top_k_embedded(self.embed(samples), k)
        return [[self.classes_[j] for j in row] for row in idx], p

    # ------------------------------------------------------------------ persistence
    def _save(self, folder: Path) -> None:
        torch.save(self.net_.state_dict(), folder / "state_dict.pt")
        np.savez_compressed(folder / "gallery.npz", labels=np.array(self.classes_, dtype=object).astype(str),
                            vectors=self.gallery_, counts=self.counts_)

    def _meta(self) -> dict:
        return {"temperature_scale": self.scale_, "classes_are_the_training_gallery": True}

    def _restore(self, folder: Path, meta: dict) -> None:
        self.net_ = self._net()
        self.net_.load_state_dict(torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True))
        self.net_.eval()
        with np.load(folder / "gallery.npz") as data:
            self._set_gallery([str(v) for v in data["labels"]], data["vectors"], data["counts"])
        self.scale_ = float(meta["temperature_scale"])
