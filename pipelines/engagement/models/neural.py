"""A small neural model trained by streaming Parquet row groups through DataLoader workers.

fastText-style: the title's hashed unigrams and bigrams go through an ``EmbeddingBag`` (mean of ``dim``-d
vectors over ``buckets`` rows), the author through a hashed embedding (a learned popularity, no table to
keep), hour and weekday through small embeddings; with over_18, the title's length and the years since 2005
they feed a one-hidden-layer MLP predicting ``log1p(up_votes)`` (standardised by the training mean and SD).
Sparse embeddings learn with SparseAdam, the rest with Adam.

The budget is ``epochs`` over the training months (through :class:`~pipelines.engagement.models.loader.
ParquetShards`: ``workers`` processes, each row group read by exactly one of them); seeds and torch threads
are fixed, so the same data and Params give the same model. ``time_budget_s`` is only a safety net, and the
run reports whether it bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.engagement import dataset
from pipelines.engagement.models.base import (
    Curve,
    Timer,
    TrainContext,
    check_predictions,
    read_model_json,
    rmse,
    write_model_json,
)

DEFAULTS: dict = {"buckets": 1 << 18, "dim": 32, "author_buckets": 1 << 16, "author_dim": 8, "hidden": 64,
                  "epochs": 2, "batch_rows": 1024, "lr": 3e-3, "sparse_lr": 1e-2, "workers": 2, "threads": 1,
                  "seed": 42, "time_budget_s": 3600.0, "curve_points": 24}


def _net(p: dict):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text = nn.EmbeddingBag(p["buckets"], p["dim"], mode="mean", sparse=True)
            self.author = nn.Embedding(p["author_buckets"], p["author_dim"], sparse=True)
            self.hour = nn.Embedding(24, 4)
            self.weekday = nn.Embedding(7, 3)
            width = p["dim"] + p["author_dim"] + 4 + 3 + 3
            self.mlp = nn.Sequential(nn.Linear(width, p["hidden"]), nn.ReLU(), nn.Linear(p["hidden"], 1))
            nn.init.normal_(self.text.weight, 0.0, 0.05)
            nn.init.normal_(self.author.weight, 0.0, 0.05)

        def forward(self, b: dict) -> torch.Tensor:
            z = torch.cat([self.text(b["ids"], b["offsets"]), self.author(b["author"]), self.hour(b["hour"]),
                           self.weekday(b["weekday"]), b["dense"]], dim=1)
            return self.mlp(z).squeeze(1)

    return Net()


class NeuralEngagement:
    name = "neural"

    def __init__(self, **params) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown neural param(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.params = {**DEFAULTS, **params}
        self.net_ = None
        self.mean_, self.sd_ = 0.0, 1.0

    def _valid_batches(self, table, chunk: int = 4096) -> list[dict]:
        from pipelines.engagement.models.loader import featurize

        p = self.params
        return [featurize(table.slice(lo, chunk), p["buckets"], p["author_buckets"])
                for lo in range(0, table.num_rows, chunk)]

    def _predict_batches(self, batches: list[dict]) -> np.ndarray:
        import torch

        self.net_.eval()
        with torch.inference_mode():
            out = [self.net_(b).numpy() for b in batches]
        self.net_.train()
        pred = np.concatenate(out) if out else np.zeros(0)
        return pred.astype(np.float64) * self.sd_ + self.mean_

    def fit(self, ctx: TrainContext) -> dict:
        import torch

        from pipelines.engagement.models.loader import ParquetShards, loader

        p = self.params
        torch.manual_seed(p["seed"])
        torch.set_num_threads(int(p["threads"]))
        self.mean_, self.sd_ = float(ctx.target["mean"]), float(ctx.target["sd"]) or 1.0
        self.net_ = _net(p)
        sparse = [self.net_.text.weight, self.net_.author.weight]
        dense = [w for n, w in self.net_.named_parameters() if not n.startswith(("text.", "author."))]
        opt_sparse = torch.optim.SparseAdam(sparse, lr=p["sparse_lr"])
        opt_dense = torch.optim.Adam(dense, lr=p["lr"])
        units = dataset.row_groups(ctx.train_paths)
        shards = ParquetShards(units, ctx.split.end, p["batch_rows"], p["buckets"], p["author_buckets"], p["seed"])
        valid = self._valid_batches(ctx.valid)
        valid_y = np.concatenate([b["y"].numpy() for b in valid]).astype(np.float64) if valid else np.zeros(0)
        curve = Curve(int(ctx.target["rows"]) * p["epochs"], p["curve_points"])
        timer = Timer(p["time_budget_s"])
        seen = steps = 0
        budget_hit = False
        for epoch in range(p["epochs"]):
            shards.epoch = epoch
            for batch in loader(shards, p["workers"]):
                pred = self.net_(batch)
                loss = torch.mean((pred - (batch["y"] - self.mean_) / self.sd_) ** 2)
                opt_sparse.zero_grad()
                opt_dense.zero_grad()
                loss.backward()
                opt_sparse.step()
                opt_dense.step()
                seen += len(batch["y"])
                steps += 1
                if curve.due(seen):
                    curve.add(seen, rmse(valid_y, self._predict_batches(valid)))
                if timer.over():
                    budget_hit = True
                    break
            if budget_hit:
                break
        if not curve.points or curve.points[-1][0] != seen:
            curve.add(seen, rmse(valid_y, self._predict_batches(valid)))
        self.net_.eval()
        return {"rows_seen": seen, "steps": steps, "epochs": p["epochs"], "units": len(units),
                "workers": p["workers"], "seconds": round(timer.seconds, 1), "time_budget_hit": budget_hit,
                "curve": curve.points}

    def predict(self, table) -> np.ndarray:
        if self.net_ is None:
            raise RuntimeError("the neural model is not fitted")
        import torch

        torch.set_num_threads(int(self.params["threads"]))
        return check_predictions(self.name, self._predict_batches(self._valid_batches(table)), table.num_rows)

    def save(self, folder: Path) -> None:
        import torch

        folder = Path(folder)
        write_model_json(folder, self.name, self.params, mean_log1p=self.mean_, sd_log1p=self.sd_)
        torch.save(self.net_.state_dict(), folder / "state_dict.pt")

    @classmethod
    def load(cls, folder: Path) -> NeuralEngagement:
        import torch

        folder = Path(folder)
        meta = read_model_json(folder)
        model = cls(**meta["params"])
        model.mean_, model.sd_ = float(meta["mean_log1p"]), float(meta["sd_log1p"])
        model.net_ = _net(model.params)
        model.net_.load_state_dict(torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True))
        model.net_.eval()
        return model
