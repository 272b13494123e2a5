"""Keystroke identification benchmark: models at seed scale and beyond, the embedding model at 1K-100K enrolled
users, and the pager against the local server. Prints every figure and its ratio to a baseline measured in the
same run; ``--out`` also writes them as JSON (and the scale curve as a PNG beside it).

Parts (``--part``, default all):

* ``models``: every model type trained with the bench budgets (below) on generated users at ``--scales`` × 300
  users (the seed's scale is hundreds of users), each fit in its own subprocess with a time cap and an RSS cap
  (a model that cannot finish is reported as such, with the cap that stopped it). Figures: fit seconds,
  training and prediction samples/s, peak RSS, held-out accuracy beside the oracle's. Ratio: each scale's fit
  time to the same model's at 1×. A model whose 1× → 10× growth projects past ``--skip-factor`` × the cap at
  the next scale is skipped there, and the projection printed (marked as such).
* ``embedding``: the encoder trained once on ``--train-users`` users; then 100,000 *other* users generated in
  memory in chunks (the paged JSON of 700,000 attempts would be ~1.5 GB: it is not written), each enrolled
  from 5 attempts with 2 more as probes. For 1K, 10K and 100K enrolled users: top-1 / top-5 identification
  (exact search and HNSW), EER (genuine vs 100 sampled impostor centroids per probe, pooled), the oracle's
  top-1 / top-5 on 300 probes, enrolment time per user, identification latency per attempt (embed + search,
  one attempt at a time), gallery and index memory. Beside it, a logistic regression retrained on the same
  enrolment attempts where it fits (a classifier cannot enrol: it must be retrained with every new user).
* ``pager``: a generated dataset served by the local server: a bare GET of every page (the baseline), the
  pager's crawl (retries, checks, cache writes), the full ingest validation, and a second validation from the
  cache, as pages/s, MB/s and attempts/s.

Usage::

    .venv/bin/python bench/keystrokes_bench.py                      # everything (about an hour on 2 cores)
    .venv/bin/python bench/keystrokes_bench.py --part models --scales 1 10
    .venv/bin/python bench/keystrokes_bench.py --part embedding --gallery 1000 10000 --out bench/out/ks.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PIPELINES_HOME", tempfile.mkdtemp(prefix="ks-bench-home-"))

#: Budgets used at every scale (smaller than the DAG's defaults, so the larger scales can finish at all).
BENCH_BUDGETS = {"logreg": {"max_iter": 100}, "linear_svm": {}, "adaboost": {"n_estimators": 50},
                 "random_forest": {"n_estimators": 100}, "catboost": {"iterations": 50}, "gru": {"epochs": 3},
                 "embedding": {"epochs": 5}}
SEED_USERS = 300


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_peak_rss_mib() -> float:
    """This process's own peak RSS (``VmHWM``). Not ``ru_maxrss``: a child started by ``subprocess`` inherits the
    parent's peak through the exec (a 10 MiB child of an 800 MiB parent reports 826 MiB), so every capped fit
    reported at least the parent's RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mib()


def say(text: str = "") -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------- child processes
def run_capped(step: str, job: dict, work: Path, cap_s: float, cap_mib: float) -> dict:
    """Run ``step`` in a fresh interpreter; kill it past ``cap_s`` seconds or ``cap_mib`` RSS."""
    import psutil

    label = job.get("label", step)
    job_file, result = work / f"{label}.job.json", work / f"{label}.result.json"
    job_file.write_text(json.dumps(job))
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_step", step, "--_job", str(job_file),
           "--_result", str(result)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO)
    peak, why = 0.0, None
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            peak = max(peak, handle.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            break
        if peak > cap_mib:
            why = f"RSS above {cap_mib:,.0f} MiB"
        elif time.monotonic() - started > cap_s:
            why = f"not finished in {cap_s:,.0f} s"
        if why:
            proc.kill()
            proc.wait()
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    if why or proc.returncode != 0 or not result.exists():
        return {"ok": False, "why": why or f"exit status {proc.returncode}", "wall_s": elapsed, "peak_rss_mib": peak}
    out = json.loads(result.read_text())
    out.update({"ok": True, "wall_s": elapsed, "polled_peak_rss_mib": peak})
    return out


def _samples(path: str):
    from pipelines.keystrokes.features import Samples

    with open(path, "rb") as f:
        data = pickle.load(f)
    return Samples(data["ids"], data["chars"], data["times"], data["labels"])


def step_fit(job: dict) -> dict:
    """Child: features, one model's fit on the training attempts, prediction on the held-out ones."""
    from pipelines.keystrokes.models.evaluate import metrics
    from pipelines.keystrokes.models.registry import MODEL_TYPES
    from pipelines.keystrokes.models.split import holdout_mask

    samples = _samples(job["data"])
    t = time.perf_counter()
    _ = samples.table
    if job["model"] in ("gru", "embedding"):
        _ = samples.seq
    features_s = time.perf_counter() - t
    held = holdout_mask(samples.sample_ids, samples.labels, 0.2, seed=42)
    train, test = samples.subset(~held), samples.subset(held)
    classes = sorted(set(samples.labels.tolist()))
    model = MODEL_TYPES[job["model"]](seed=42, **BENCH_BUDGETS[job["model"]])
    t, cpu = time.perf_counter(), time.process_time()
    info = model.fit(train, classes)
    fit_s, fit_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    y = model.encode(test.labels)
    t, cpu = time.perf_counter(), time.process_time()
    if len(classes) > 3000 and hasattr(model, "top_k_embedded"):
        # the embedding model's own search (what prediction uses): a full (attempts x users) probability
        # matrix of 200,000 attempts x 30,000 users would be 48 GB
        top, _ = model.top_k_embedded(model.embed(test), 3)
        proba = None
    else:
        proba = model.predict_proba(test)
        top = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    predict_s, predict_cpu_s = time.perf_counter() - t, time.process_time() - cpu
    out = {"model": job["model"], "users": len(classes), "n_train": len(train), "n_test": len(test),
           "features_s": features_s, "fit_s": fit_s, "predict_s": predict_s, "fit_cpu_s": fit_cpu_s,
           "predict_cpu_s": predict_cpu_s,
           "train_samples_per_s": len(train) / fit_s, "predict_samples_per_s": len(test) / predict_s,
           "accuracy": float((top[:, 0] == y).mean()), "top3_accuracy": float((top == y[:, None]).any(axis=1).mean()),
           "fit": {k: v for k, v in info.items() if isinstance(v, int | float | bool | str)}}
    if proba is not None and len(classes) <= 3000:
        out["eer"] = metrics(y, proba)["eer"]
    return out


def step_logreg_gallery(job: dict) -> dict:
    """Child: a logistic regression retrained on the enrolment attempts of the first N gallery users."""
    from pipelines.keystrokes.features import Samples
    from pipelines.keystrokes.models.classic import LogisticRegressionModel

    with open(job["data"], "rb") as f:
        data = pickle.load(f)
    n = job["users"]
    enrol = [i for i, u in enumerate(data["enrol_user"]) if u < n]
    probe = [i for i, u in enumerate(data["probe_user"]) if u < n][: job["max_probes"]]
    train = Samples([str(i) for i in enrol], [data["enrol_chars"][i] for i in enrol],
                    [data["enrol_times"][i] for i in enrol], [str(data["enrol_user"][i]) for i in enrol])
    test = Samples([str(i) for i in probe], [data["probe_chars"][i] for i in probe],
                   [data["probe_times"][i] for i in probe], [str(data["probe_user"][i]) for i in probe])
    model = LogisticRegressionModel(max_iter=100, seed=42)
    t = time.perf_counter()
    model.fit(train, sorted(set(train.labels.tolist())))
    fit_s = time.perf_counter() - t
    users, _ = model.top_k(test, 5)
    top1 = float(np.mean([u[0] == lab for u, lab in zip(users, test.labels, strict=True)]))
    top5 = float(np.mean([lab in u for u, lab in zip(users, test.labels, strict=True)]))
    return {"users": n, "fit_s": fit_s, "top1": top1, "top5": top5, "probes": len(test)}


STEPS = {"fit": step_fit, "logreg_gallery": step_logreg_gallery}


# ------------------------------------------------------------------------------------------- part: models
def make_scale_data(users: int, seed: int, path: Path) -> dict:
    from collections import Counter

    from pipelines.keystrokes.generate import simulate

    t = time.perf_counter()
    profiles, attempts = simulate(users, seed, mean_samples=24.0)
    counts = Counter(u for u, _, _ in attempts)
    kept = [a for a in attempts if counts[a[0]] >= 5]
    data = {"ids": [f"{u}-{i}" for i, (u, _, _) in enumerate(kept)], "chars": [a[1] for a in kept],
            "times": [a[2] for a in kept], "labels": [f"u{a[0]:06d}" for a in kept]}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"users": len({a[0] for a in kept}), "attempts": len(kept), "generate_s": time.perf_counter() - t,
            "profiles": [p.__dict__ for p in profiles]}


def oracle_accuracy(path: Path, profiles: list[dict], max_probes: int = 1000) -> dict:
    from pipelines.keystrokes.models.split import holdout_mask
    from pipelines.keystrokes.oracle import Oracle

    samples = _samples(str(path))
    held = np.flatnonzero(holdout_mask(samples.sample_ids, samples.labels, 0.2, seed=42))
    labels = sorted(set(samples.labels.tolist()))
    counts = np.array([(samples.labels == lab).sum() for lab in labels], dtype=float)  # ∝ training shares
    by_label = {f"u{i:06d}": {**p, "label": f"u{i:06d}"} for i, p in enumerate(profiles)}
    oracle = Oracle([by_label[lab] for lab in labels], labels, prior=counts)
    pick = held[np.linspace(0, len(held) - 1, min(max_probes, len(held))).astype(int)]
    t = time.perf_counter()
    logp = oracle.log_posterior([(samples.chars[i], samples.times_us[i]) for i in pick])
    truth = np.array([labels.index(samples.labels[i]) for i in pick])
    order = np.argsort(-logp, axis=1)
    return {"probes": len(pick), "accuracy": float((order[:, 0] == truth).mean()),
            "top3_accuracy": float((order[:, :3] == truth[:, None]).any(axis=1).mean()),
            "seconds": time.perf_counter() - t}


def part_models(args, work: Path) -> dict:
    from pipelines.keystrokes.schema import MODEL_TYPES

    results: dict = {"budgets": BENCH_BUDGETS, "scales": {}}
    base: dict[str, float] = {}
    growth: dict[str, float] = {}
    previous_scale, rows_prev = None, {}
    for scale in args.scales:
        users = SEED_USERS * scale
        path = work / f"scale{scale}.pkl"
        made = make_scale_data(users, 1000 + scale, path)
        say(f"\n== models at {scale}x: {made['users']:,} users, {made['attempts']:,} valid attempts "
            f"(generated in memory in {made['generate_s']:.1f} s) ==")
        oracle = oracle_accuracy(path, made.pop("profiles"))
        say(f"  oracle (ceiling, {oracle['probes']} held-out attempts): accuracy {oracle['accuracy']:.3f}, "
            f"top-3 {oracle['top3_accuracy']:.3f}")
        rows = {}
        for name in (args.models or MODEL_TYPES):
            if previous_scale is not None and name in growth:
                projected = rows_prev[name]["fit_s"] * growth[name] ** np.log10(scale / previous_scale)
                if projected > args.skip_factor * args.cap_s:
                    rows[name] = {"ok": False, "why": f"skipped: projected fit {projected:,.0f} s "
                                                      f"(> {args.skip_factor:g} × cap)", "projected_fit_s": projected}
                    say(f"  {name:14s} {rows[name]['why']}")
                    continue
            if previous_scale is not None and not rows_prev.get(name, {}).get("ok", True):
                rows[name] = {"ok": False, "why": f"skipped: did not fit at {previous_scale}x "
                                                  f"({rows_prev[name]['why']})"}
                say(f"  {name:14s} {rows[name]['why']}")
                continue
            out = run_capped("fit", {"data": str(path), "model": name, "label": f"{name}-{scale}"}, work,
                             args.cap_s, args.cap_gib * 1024)
            rows[name] = out
            if out["ok"]:
                if scale == args.scales[0]:
                    base[name] = out["fit_s"]
                ratio = out["fit_s"] / base[name] if name in base else float("nan")
                say(f"  {name:14s} fit {out['fit_s']:8.1f} s ({ratio:6.1f}x the {args.scales[0]}x fit)  "
                    f"train {out['train_samples_per_s']:9,.0f}/s  predict {out['predict_samples_per_s']:9,.0f}/s  "
                    f"accuracy {out['accuracy']:.3f} (oracle {oracle['accuracy']:.3f})  "
                    f"peak RSS {out['peak_rss_mib']:,.0f} MiB")
            else:
                say(f"  {name:14s} did not finish: {out['why']} (after {out['wall_s']:.0f} s, peak RSS "
                    f"{out['peak_rss_mib']:,.0f} MiB)")
        if previous_scale is not None:
            for name, row in rows.items():
                if row.get("ok") and rows_prev.get(name, {}).get("ok"):
                    decades = np.log10(scale / previous_scale)
                    growth[name] = (row["fit_s"] / rows_prev[name]["fit_s"]) ** (1 / decades)
        results["scales"][scale] = {**made, "oracle": oracle, "models": rows}
        rows_prev, previous_scale = rows, scale
        path.unlink(missing_ok=True)
    return results


# ------------------------------------------------------------------------------------------- part: embedding
def part_embedding(args, work: Path) -> dict:
    import torch

    from pipelines.keystrokes.features import Samples
    from pipelines.keystrokes.generate import simulate
    from pipelines.keystrokes.models.embedding import EmbeddingModel, l2_normalise
    from pipelines.keystrokes.models.evaluate import eer
    from pipelines.keystrokes.oracle import Oracle

    population_seed = 99
    out: dict = {"train_users": args.train_users, "epochs": args.embed_epochs, "gallery": {}}
    _, attempts = simulate(args.train_users, 7, mean_samples=20.0, samples_sigma=0.5,
                                  profile_seed=population_seed)
    train = Samples([str(i) for i in range(len(attempts))], [a[1] for a in attempts], [a[2] for a in attempts],
                    [f"t{a[0]}" for a in attempts])
    model = EmbeddingModel(epochs=args.embed_epochs, seed=1, ann_threshold=10**9)
    t = time.perf_counter()
    info = model.fit(train, sorted(set(train.labels.tolist())))
    out["train"] = {"attempts": len(train), "fit_s": time.perf_counter() - t, **{k: v for k, v in info.items()
                                                                                if not isinstance(v, list)}}
    say(f"\n== embedding: encoder trained on {args.train_users:,} users ({len(train):,} attempts, "
        f"{info['epochs']} epochs) in {out['train']['fit_s']:.0f} s ==")
    del train, attempts

    n_max = max(args.gallery)
    chunk = 10_000
    centroids = np.zeros((n_max, model.params["dim"]), dtype=np.float32)
    probe_emb, probe_user = [], []
    oracle_probes: list[tuple] = []
    gallery_profiles: list[dict] = []
    logreg_data = {"enrol_user": [], "enrol_chars": [], "enrol_times": [], "probe_user": [], "probe_chars": [],
                   "probe_times": []}
    gen_s = embed_s = 0.0
    enrolled = 0
    for lo in range(0, n_max, chunk):
        t = time.perf_counter()
        chunk_profiles, chunk_attempts = simulate(min(chunk, n_max - lo), 10_000 + lo, samples=8,
                                                  profile_seed=population_seed)
        gen_s += time.perf_counter() - t
        gallery_profiles += [{**p.__dict__, "label": str(lo + i)} for i, p in enumerate(chunk_profiles)]
        by_user: dict[int, list] = {}
        for u, chars, times in chunk_attempts:
            by_user.setdefault(lo + u, []).append((chars, times))
        enrol_rows, probe_rows = [], []
        for u in range(lo, lo + len(chunk_profiles)):
            mine = by_user.get(u, [])
            enrol_rows += [(u, *a) for a in mine[:5]]
            probe_rows += [(u, *a) for a in mine[5:7]]
            if u < min(args.gallery) and len(oracle_probes) < 300 and len(mine) > 5:
                oracle_probes.append((u, *mine[5]))
        if lo < args.logreg_max_users:  # what the logistic regression gets retrained on
            for u, c, tm in enrol_rows:
                logreg_data["enrol_user"].append(u)
                logreg_data["enrol_chars"].append(c)
                logreg_data["enrol_times"].append(tm)
            for u, c, tm in probe_rows:
                logreg_data["probe_user"].append(u)
                logreg_data["probe_chars"].append(c)
                logreg_data["probe_times"].append(tm)
        t = time.perf_counter()
        e = model.embed(Samples([""] * len(enrol_rows), [r[1] for r in enrol_rows], [r[2] for r in enrol_rows]))
        users = np.array([r[0] for r in enrol_rows])
        sums = np.zeros((len(chunk_profiles), e.shape[1]), dtype=np.float64)
        np.add.at(sums, users - lo, e)
        centroids[lo: lo + len(chunk_profiles)] = l2_normalise(sums)
        embed_s += time.perf_counter() - t
        enrolled += len(chunk_profiles)
        probe_emb.append(model.embed(Samples([""] * len(probe_rows), [r[1] for r in probe_rows],
                                             [r[2] for r in probe_rows])))
        probe_user.append(np.array([r[0] for r in probe_rows]))
        say(f"  generated and enrolled {enrolled:,} / {n_max:,} users ({gen_s:.0f} s generating, "
            f"{embed_s:.0f} s embedding enrolment attempts)")
    probes = np.concatenate(probe_emb)
    probe_user = np.concatenate(probe_user)
    out["enrol_embed_ms_per_user"] = 1000 * embed_s / n_max
    out["generate_s"] = gen_s
    with open(work / "gallery.pkl", "wb") as f:
        pickle.dump(logreg_data, f, protocol=pickle.HIGHEST_PROTOCOL)

    rng = np.random.default_rng(0)
    single = Samples(["x"], [oracle_probes[0][1]], [oracle_probes[0][2]])
    with torch.no_grad():
        t = time.perf_counter()
        for _ in range(50):
            model.embed(single)
        embed_one_ms = 1000 * (time.perf_counter() - t) / 50
    out["embed_one_attempt_ms"] = embed_one_ms
    for n in sorted(args.gallery):
        gallery = centroids[:n]
        mask = probe_user < n
        idx = np.flatnonzero(mask)
        if len(idx) > args.max_probes:
            idx = np.sort(rng.choice(idx, args.max_probes, replace=False))
        p, y = probes[idx], probe_user[idx]
        model._set_gallery([str(i) for i in range(n)], gallery, np.full(n, 5))
        t = time.perf_counter()
        top, _ = model.top_k_embedded(p, 5, exact=True)
        exact_s = time.perf_counter() - t
        top1, top5 = float((top[:, 0] == y).mean()), float((top == y[:, None]).any(axis=1).mean())
        genuine = (p * gallery[y]).sum(axis=1)
        others = rng.integers(0, n - 1, size=(len(y), 100))
        others = others + (others >= y[:, None])  # never the probe's own user
        impostor = np.einsum("nd,nkd->nk", p, gallery[others]).ravel()
        verification_eer = eer(genuine, impostor)
        t = time.perf_counter()
        model.params["ann_threshold"] = 1
        index = model.ann_index()
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        ann_top, _ = model.top_k_embedded(p, 5, exact=False)
        ann_s = time.perf_counter() - t
        index.save_index(str(work / "hnsw.bin"))
        index_mib = (work / "hnsw.bin").stat().st_size / 2**20
        model.params["ann_threshold"] = 10**9
        one = p[:200]
        t = time.perf_counter()
        for row in one:
            model.top_k_embedded(row[None, :], 5, exact=True)
        exact_one_ms = 1000 * (time.perf_counter() - t) / len(one)
        t = time.perf_counter()
        for row in one:
            index.knn_query(row[None, :], k=5)
        ann_one_ms = 1000 * (time.perf_counter() - t) / len(one)
        t = time.perf_counter()
        truth_ids = [u for u, _, _ in oracle_probes]
        oracle = Oracle(gallery_profiles[:n], [str(i) for i in range(n)])
        logp = oracle.log_posterior([(c, tm) for _, c, tm in oracle_probes])
        order = np.argsort(-logp, axis=1)[:, :5]
        oracle_s = time.perf_counter() - t
        row = {"users": n, "probes": len(y), "top1": top1, "top5": top5, "eer": verification_eer,
               "hnsw_top1": float((ann_top[:, 0] == y).mean()),
               "hnsw_top5": float((ann_top == y[:, None]).any(1).mean()),
               "hnsw_recall_at_1": float((ann_top[:, 0] == top[:, 0]).mean()), "hnsw_build_s": build_s,
               "exact_batch_ms_per_probe": 1000 * exact_s / len(y), "hnsw_batch_ms_per_probe": 1000 * ann_s / len(y),
               "exact_one_ms": exact_one_ms, "hnsw_one_ms": ann_one_ms,
               "identify_one_ms_exact": embed_one_ms + exact_one_ms, "identify_one_ms_hnsw": embed_one_ms + ann_one_ms,
               "gallery_mib": gallery.nbytes / 2**20, "hnsw_index_mib": index_mib,
               "oracle_probes": len(oracle_probes), "oracle_top1": float((order[:, 0] == truth_ids).mean()),
               "oracle_top5": float((order == np.array(truth_ids)[:, None]).any(1).mean()), "oracle_s": oracle_s,
               "peak_rss_mib": rss_mib()}
        if n <= args.logreg_max_users:
            lr = run_capped("logreg_gallery", {"data": str(work / "gallery.pkl"), "users": n,
                                               "max_probes": args.max_probes, "label": f"logreg-gallery-{n}"},
                            work, args.cap_s, args.cap_gib * 1024)
            row["logreg"] = lr
        else:
            row["logreg"] = {"ok": False, "why": f"not run above {args.logreg_max_users:,} users (--logreg-max-users)"}
        out["gallery"][n] = row
        lr = row["logreg"]
        lr_text = (f"logreg retrained {lr['fit_s']:.0f} s: top-1 {lr['top1']:.3f}" if lr.get("ok")
                   else f"logreg: {lr['why']}")
        say(f"  {n:>7,} users: top-1 {top1:.3f} top-5 {top5:.3f} EER {verification_eer:.3f} | HNSW top-1 "
            f"{row['hnsw_top1']:.3f} (recall@1 {row['hnsw_recall_at_1']:.3f}, build {build_s:.1f} s) | oracle "
            f"top-1 {row['oracle_top1']:.3f} top-5 {row['oracle_top5']:.3f} | one attempt: exact "
            f"{row['identify_one_ms_exact']:.2f} ms, HNSW {row['identify_one_ms_hnsw']:.2f} ms "
            f"({exact_one_ms / ann_one_ms:.1f}x faster search) | gallery {row['gallery_mib']:.1f} MiB, index "
            f"{index_mib:.1f} MiB | {lr_text}")
    return out


def plot_curve(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [result["gallery"][n] for n in sorted(result["gallery"], key=int)]
    n = [r["users"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(n, [r["top1"] for r in rows], "o-", label="embedding top-1 (exact)")
    axes[0].plot(n, [r["top5"] for r in rows], "o--", label="embedding top-5")
    axes[0].plot(n, [r["hnsw_top1"] for r in rows], "x:", label="embedding top-1 (HNSW)")
    axes[0].plot(n, [r["oracle_top1"] for r in rows], "s-", color="#d62728", label="oracle top-1")
    axes[0].plot(n, [r["oracle_top5"] for r in rows], "s--", color="#d62728", label="oracle top-5")
    lr = [(r["users"], r["logreg"]["top1"]) for r in rows if r["logreg"].get("ok")]
    if lr:
        axes[0].plot(*zip(*lr, strict=True), "^-", color="#7f7f7f", label="logreg retrained, top-1")
    axes[0].set(xscale="log", ylim=(0, 1), xlabel="enrolled users", ylabel="identification accuracy",
                title="Identification against the number of users")
    axes[0].legend(fontsize=8)
    axes[1].plot(n, [r["eer"] for r in rows], "o-")
    axes[1].set(xscale="log", ylim=(0, 0.5), xlabel="enrolled users", ylabel="EER",
                title="Verification EER (sampled impostors)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- part: pager
def part_pager(args, work: Path) -> dict:
    import requests

    from pipelines.keystrokes.generate import KeystrokeSpec, write_dataset
    from pipelines.keystrokes.ingest import inspect_url
    from pipelines.keystrokes.pager import FetchConfig, Pager
    from pipelines.keystrokes.server import serving

    out = {}
    for users in args.pager_users:
        folder = work / f"pages-{users}"
        summary = write_dataset(KeystrokeSpec(n_users=users, seed=5), folder)
        mib = sum(p.stat().st_size for p in (folder / "pages").iterdir()) / 2**20
        root = work / f"root-{users}"
        os.environ["PIPELINES_DATA_ROOT"] = str(root)
        from pipelines.settings import get_settings

        get_settings.cache_clear()
        with serving(folder) as server:
            urls = [f"{server.base_url}/train/{name}" for name in server.site.chain]
            t = time.perf_counter()
            with requests.Session() as s:
                for url in urls:
                    s.get(url, timeout=30).content  # noqa: B018
            raw_s = time.perf_counter() - t
            t = time.perf_counter()
            with Pager(FetchConfig()) as pager:
                crawled = sum(1 for _ in pager.crawl(server.train_url))
            crawl_s = time.perf_counter() - t
            import shutil

            shutil.rmtree(root, ignore_errors=True)
            t = time.perf_counter()
            result = inspect_url("train", server.train_url, min_samples=5, max_bad_share=1.0)
            ingest_s = time.perf_counter() - t
            t = time.perf_counter()
            inspect_url("train", server.train_url, min_samples=5, max_bad_share=1.0)
            cached_s = time.perf_counter() - t
        row = {"users": users, "pages": len(urls), "mib": mib, "attempts": result.rows_read,
               "raw_get_s": raw_s, "crawl_s": crawl_s, "ingest_s": ingest_s, "ingest_cached_s": cached_s,
               "raw_pages_per_s": len(urls) / raw_s, "crawl_pages_per_s": crawled / crawl_s,
               "ingest_attempts_per_s": result.rows_read / ingest_s,
               "cached_attempts_per_s": result.rows_read / cached_s, "train_attempts": summary["train_attempts"]}
        out[users] = row
        say(f"\n== pager, {users:,} users: {len(urls):,} pages, {mib:.0f} MiB ==\n"
            f"  bare GET of every page (baseline): {row['raw_pages_per_s']:,.0f} pages/s, {mib / raw_s:.1f} MiB/s\n"
            f"  pager crawl (retries, checks, cache): {row['crawl_pages_per_s']:,.0f} pages/s "
            f"({crawl_s / raw_s:.2f}x the baseline's time)\n"
            f"  ingest validation (crawl + replay + staging): {row['ingest_attempts_per_s']:,.0f} attempts/s "
            f"({ingest_s / raw_s:.1f}x)\n"
            f"  again from the cache (no request): {row['cached_attempts_per_s']:,.0f} attempts/s "
            f"({cached_s / raw_s:.1f}x)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["models", "embedding", "pager", "all"], default="all")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100], help="× 300 users")
    parser.add_argument("--models", nargs="+", help="model types (default: all)")
    parser.add_argument("--cap-s", type=float, default=900.0, help="time cap per fit, seconds")
    parser.add_argument("--cap-gib", type=float, default=12.0, help="RSS cap per fit, GiB")
    parser.add_argument("--skip-factor", type=float, default=2.0)
    parser.add_argument("--train-users", type=int, default=2000)
    parser.add_argument("--embed-epochs", type=int, default=10)
    parser.add_argument("--gallery", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--max-probes", type=int, default=20_000)
    parser.add_argument("--logreg-max-users", type=int, default=10_000)
    parser.add_argument("--pager-users", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--_step")
    parser.add_argument("--_job", type=Path)
    parser.add_argument("--_result", type=Path)
    args = parser.parse_args()
    if args._step:
        t = time.perf_counter()
        result = STEPS[args._step](json.loads(args._job.read_text()))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result.update({"seconds": time.perf_counter() - t, "peak_rss_mib": own_peak_rss_mib(),
                       "cpu_s": usage.ru_utime + usage.ru_stime})
        args._result.write_text(json.dumps(result, default=float))
        return 0
    say(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"torch threads 1, BLAS 1 thread per fit")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="ks-bench-") as tmp:
        work = Path(tmp)
        if args.part in ("models", "all"):
            results["models"] = part_models(args, work)
        if args.part in ("embedding", "all"):
            results["embedding"] = part_embedding(args, work)
        if args.part in ("pager", "all"):
            results["pager"] = part_pager(args, work)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=float))
        if "embedding" in results:
            plot_curve(results["embedding"], args.out.with_suffix(".png"))
        say(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
