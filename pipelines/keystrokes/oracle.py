"""The generator's own per-user likelihood of an attempt: the ceiling of identification accuracy.

For a generated dataset the truth holds every user's rhythm (:class:`~pipelines.keystrokes.generate.UserProfile`).
Under the generator, an attempt's log gaps are ``x_j = a_j(u) + fatigue_u * phi + z + e_j`` where ``a_j(u)`` is
fixed by what is observable about press ``j`` (a character at cursor position ``p``: ``mu + digraph[p]``, plus
``resume`` right after a backspace; a backspace: ``mu + bs_first`` or ``mu + bs_repeat``), ``z ~ N(0, tau²)``
is shared by the whole attempt and ``e_j ~ N(0, sigma²)``. So the gaps are jointly normal with covariance
``sigma² I + tau² 11ᵀ`` (closed form), and the unknown fatigue position ``phi`` (which attempt of the user this
is) is integrated over a uniform grid. The typo process adds ``error_rate^T (1 - error_rate)^(D - T)`` for ``T``
corrections among ``D`` decisions and the probability of each correction's length. The posterior over users
uses a prior (by default uniform; training uses each user's share of training attempts).

Exact up to the grid over ``phi`` and millisecond rounding of the press times: no model can beat it beyond noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.keystrokes import schema
from pipelines.keystrokes.replay import replay

L = len(schema.PHRASE)
_FLOOR = np.log(1e-12)


class Oracle:
    """Likelihoods of attempts under the planted profiles of ``labels`` (in that order)."""

    def __init__(self, profiles: Sequence[dict], labels: Sequence[str] | None = None,
                 prior: np.ndarray | None = None, phi_points: int = 9) -> None:
        by_label = {p["label"]: p for p in profiles}
        self.labels = list(labels) if labels is not None else list(by_label)
        missing = [lab for lab in self.labels if lab not in by_label]
        if missing:
            raise KeyError(f"{len(missing)} label(s) are not in the truth, e.g. {missing[:3]}")
        rows = [by_label[lab] for lab in self.labels]
        col = lambda k: np.array([r[k] for r in rows], dtype=np.float64)  # noqa: E731
        self.mu, self.sigma, self.tau, self.fatigue = col("mu"), col("sigma"), col("tau"), col("fatigue")
        self.bs_first, self.bs_repeat, self.resume = col("bs_first"), col("bs_repeat"), col("resume")
        self.digraph = np.array([r["digraph"] for r in rows], dtype=np.float64)  # (U, L)
        error = np.clip(col("error_rate"), 1e-9, 1 - 1e-9)
        self.log_e, self.log_not_e = np.log(error), np.log1p(-error)
        notice = np.array([r["notice"] for r in rows], dtype=np.float64)  # (U, K+1)
        self.k_max = notice.shape[1] - 1
        self.log_notice = np.log(np.clip(notice, 1e-300, None))
        tail = np.cumsum(notice[:, ::-1], axis=1)[:, ::-1]  # tail[:, k] = P(K >= k)
        self.log_tail = np.log(np.clip(tail, 1e-300, None))
        self.phi = np.linspace(0.0, 1.0, phi_points)
        if prior is None:
            prior = np.full(len(self.labels), 1.0 / len(self.labels))
        prior = np.asarray(prior, dtype=np.float64)
        self.log_prior = np.log(np.clip(prior / prior.sum(), 1e-300, None))

    def log_likelihood(self, chars: Sequence[str], times_us: Sequence[int]) -> np.ndarray:
        """log p(attempt | user) for every user, shape (U,)."""
        n = len(chars)
        out = np.zeros(len(self.labels))
        if n >= 2:
            out += self._timing(chars, times_us)
        return out + self._errors(chars)

    def _timing(self, chars: Sequence[str], times_us: Sequence[int]) -> np.ndarray:
        t = np.asarray(times_us, dtype=np.float64) / 1000.0
        x = np.log(np.maximum(np.diff(t), 0.5))
        m = len(x)
        is_bs = np.array([c == schema.BACKSPACE for c in chars])
        cursor = np.zeros(len(chars), dtype=np.int64)  # text length before each event
        length = 0
        for j, bs in enumerate(is_bs):
            cursor[j] = length
            length = max(length - 1, 0) if bs else length + 1
        cur, bs, prev_bs = cursor[1:], is_bs[1:], is_bs[:-1]
        char_mean = self.digraph[:, np.clip(cur, 0, L - 1)] + self.resume[:, None] * (prev_bs & ~bs)
        bs_mean = np.where(prev_bs, self.bs_repeat[:, None], self.bs_first[:, None])
        a = self.mu[:, None] + np.where(bs, bs_mean, char_mean)  # (U, m)
        r = x[None, :] - a
        s1, s2 = r.sum(axis=1), (r * r).sum(axis=1)
        f, var, tau2 = self.fatigue[:, None], (self.sigma ** 2)[:, None], (self.tau ** 2)[:, None]
        phi = self.phi[None, :]
        s1g = s1[:, None] - m * f * phi
        s2g = s2[:, None] - 2 * f * phi * s1[:, None] + m * (f * phi) ** 2
        quad = s2g / var - tau2 * s1g ** 2 / (var * (var + m * tau2))
        ll = -0.5 * quad - 0.5 * m * np.log(var) - 0.5 * np.log1p(m * tau2 / var)
        top = ll.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(ll - top).mean(axis=1, keepdims=True)))[:, 0]

    def _errors(self, chars: Sequence[str]) -> np.ndarray:
        played = replay(chars)
        n_chars = played.n_events - played.backspaces
        out = np.zeros(len(self.labels))
        continuation = 0
        for before, run in played.backspace_runs:
            k = run - 1
            typo_at = before - run
            remaining = L - 1 - typo_at
            if typo_at < 0 or k > self.k_max or k > remaining:
                out += _FLOOR  # not something the generator does
                continue
            continuation += k
            out += self.log_tail[:, k] if (k == remaining and remaining <= self.k_max) else self.log_notice[:, k]
        typos = len(played.backspace_runs)
        decisions = max(n_chars - continuation, typos)
        return out + typos * self.log_e + (decisions - typos) * self.log_not_e

    def log_posterior(self, attempts: Sequence[tuple[Sequence[str], Sequence[int]]]) -> np.ndarray:
        """log P(user | attempt), shape (n, U)."""
        out = np.empty((len(attempts), len(self.labels)))
        for i, (chars, times) in enumerate(attempts):
            ll = self.log_likelihood(chars, times) + self.log_prior
            out[i] = ll - (ll.max() + np.log(np.exp(ll - ll.max()).sum()))
        return out

    def predict_proba(self, attempts: Sequence[tuple[Sequence[str], Sequence[int]]]) -> np.ndarray:
        return np.exp(self.log_posterior(attempts))
