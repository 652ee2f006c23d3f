"""LFBO: a classifier of "is this config in the top decile?" that learns from failures.

Likelihood-free Bayesian optimization (Song et al. 2022, "A General Recipe for
Likelihood-free Bayesian Optimization"; Helion's LFBOPatternSearch) replaces the
regression surrogate of TPE or a Gaussian process by a classifier: the configs measured so
far are labelled positive when their latency is in the top fraction (10%) and negative
otherwise, and the next config is the unmeasured one with the highest predicted probability
of being positive. A regression surrogate needs a number per trial; a classifier does not,
so a config that failed to compile, ran out of resources, timed out, gave a wrong result or
was stopped early is simply a negative, and the search learns to stay away from the region
it came from. TPE drops failed trials altogether (Optuna fits it on COMPLETE and PRUNED
trials only), so on a GPU where a third or more of the proposals fail it keeps proposing
into the failing region.

The classifier here is a small L2-regularised logistic regression (numpy, fitted from zero
with a fixed number of Adam steps, so the same observations give the same model) on three
groups of features of a config's position on each axis of the space:

- one indicator per (parameter, value): "BLOCK_N=64 is good", non-monotone preferences;
- one indicator per (parameter pair, value pair): interactions ("BLOCK_K=128 with
  num_warps=2"), more strongly regularised;
- log2 of each value, standardised: monotone trends that extrapolate to unmeasured values,
  and resource limits, which are products of tile sizes (BLOCK_M x BLOCK_N x num_stages
  above a budget is a sum of logs above a threshold: a linear rule here).

Positives are weighted by how far below the threshold they are (LFBO's expected-improvement
weighting: the best config counts twice the one at the threshold); every negative weighs 1.

Proposal (`Lfbo.propose`): a seeded random warm-up of WARMUP configs, then with probability
EXPLORE a random unmeasured config, otherwise the best-scored of up to CANDIDATES unmeasured
valid configs (all of them in spaces up to that size; a seeded sample in larger ones).
Everything random comes from a generator seeded by (seed, trial number): the same seed and
the same study give the same configs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from kernels.spec import Config

from . import outcome as oc

TOP_FRACTION = 0.10   # positives: the top decile of the passing configs (Helion's quantile 0.1) ...
MIN_POSITIVES = 3     # ... but at least the best 3 (a study of 20 passing configs has 2 in its top decile)
WARMUP = 8            # random configs before the classifier proposes (the default counts)
EXPLORE = 0.10        # share of proposals after the warm-up that are random
CANDIDATES = 4096     # unmeasured configs scored per proposal (matmul 128x4096x14336 has 14,565 valid)
# Prior precisions of the logistic regression (summed log-loss): indicators of one value,
# indicators of a value pair (there are ~10x more of them: kept small unless the data insist),
# standardised log2 values.
L2_UNARY, L2_PAIR, L2_DENSE = 1.0, 4.0, 0.25
STEPS, LEARNING_RATE = 150, 0.1


@dataclass(frozen=True)
class Observation:
    """One measured config: status "ok" (with `ms`), "early-stopped" or "failed" (`kind`)."""

    config: Config
    status: str
    ms: float | None = None
    kind: str | None = None


def labels(observations: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
    """(y, weight) per observation: y=1 for a passing config in the top TOP_FRACTION (at
    least MIN_POSITIVES; ties at the threshold all count), 0 for every other: slower, stopped early, failed (any kind).
    A positive weighs 1 + its relative distance below the threshold (the best: 2)."""
    y = np.zeros(len(observations))
    w = np.ones(len(observations))
    timed = sorted((o.ms, i) for i, o in enumerate(observations) if o.status == oc.OK and o.ms is not None)
    if not timed:
        return y, w
    k = max(math.ceil(TOP_FRACTION * len(timed)), min(MIN_POSITIVES, len(timed)))
    threshold, best = timed[k - 1][0], timed[0][0]
    span = threshold - best
    for ms, i in timed:
        if ms > threshold:
            break
        y[i] = 1.0  # ties at the threshold are all in
        w[i] = 1.0 + ((threshold - ms) / span if span > 0 else 0.0)
    return y, w


class Encoder:
    """Features of configs of one space: each config is its index on every axis."""

    def __init__(self, axes: dict[str, Sequence[int]]) -> None:
        self.names = tuple(axes)
        self._index = [{v: i for i, v in enumerate(axes[n])} for n in self.names]
        sizes = np.array([len(axes[n]) for n in self.names], dtype=np.int64)
        d = len(self.names)
        self._unary_offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        pairs = [(a, b) for a in range(d) for b in range(a + 1, d)]
        self._pa = np.array([a for a, _ in pairs], dtype=np.int64)
        self._pb = np.array([b for _, b in pairs], dtype=np.int64)
        pair_sizes = sizes[self._pa] * sizes[self._pb]
        start = int(sizes.sum())
        self._pair_offset = start + np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]).astype(np.int64)
        self.n_unary = start
        self.n_binary = start + int(pair_sizes.sum())
        # log2 of each axis value, standardised over the axis's values (a one-value axis: 0).
        self._log2 = []
        for n in self.names:
            logs = np.log2(np.maximum(np.array(axes[n], dtype=float), 1.0))
            spread = logs.std()
            self._log2.append((logs - logs.mean()) / spread if spread > 0 else np.zeros_like(logs))

    def positions(self, configs: Iterable[Config]) -> np.ndarray:
        """[n, d] index of each config's value on each axis. Raises KeyError for a value off the axes."""
        rows = [[self._index[a][c[n]] for a, n in enumerate(self.names)] for c in configs]
        return np.array(rows, dtype=np.int64).reshape(-1, len(self.names))

    def binary(self, pos: np.ndarray) -> np.ndarray:
        """[n, d + d(d-1)/2] indices of the active indicator features."""
        unary = pos + self._unary_offset[None, :]
        sizes_b = np.array([len(t) for t in self._log2], dtype=np.int64)[self._pb]
        pair = self._pair_offset[None, :] + pos[:, self._pa] * sizes_b[None, :] + pos[:, self._pb]
        return np.concatenate([unary, pair], axis=1)

    def dense(self, pos: np.ndarray) -> np.ndarray:
        """[n, d] standardised log2 values."""
        cols = [self._log2[a][pos[:, a]] for a in range(len(self.names))]
        return np.stack(cols, axis=1) if cols else np.zeros((len(pos), 0))


class Classifier:
    """Logistic regression on an Encoder's features: p(top) = sigmoid(b + sum w[active] + v . dense)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.bias = 0.0
        self.w = np.zeros(encoder.n_binary)
        self.v = np.zeros(len(encoder.names))

    def fit(self, pos: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Classifier:
        """Fit from zero on positions `pos` [n, d], labels `y` and sample weights: STEPS Adam
        steps on the summed weighted log-loss plus the L2 priors. Deterministic."""
        enc = self.encoder
        idx, x = enc.binary(pos), enc.dense(pos)
        flat = idx.ravel()
        reg_w = np.full(enc.n_binary, L2_PAIR)
        reg_w[:enc.n_unary] = L2_UNARY
        rate = float(np.clip((weight * y).sum() / weight.sum(), 1e-3, 1 - 1e-3))
        theta = [np.array([math.log(rate / (1 - rate))]), np.zeros(enc.n_binary), np.zeros(x.shape[1])]
        m = [np.zeros_like(t) for t in theta]
        s = [np.zeros_like(t) for t in theta]
        b1, b2 = 0.9, 0.999
        for step in range(1, STEPS + 1):
            z = theta[0][0] + theta[1][idx].sum(axis=1) + x @ theta[2]
            r = weight * (_sigmoid(z) - y)  # d loss / d z
            grads = [np.array([r.sum()]),
                     np.bincount(flat, weights=np.repeat(r, idx.shape[1]), minlength=enc.n_binary) + reg_w * theta[1],
                     x.T @ r + L2_DENSE * theta[2]]
            for t, g, mt, st in zip(theta, grads, m, s):
                mt *= b1
                mt += (1 - b1) * g
                st *= b2
                st += (1 - b2) * g * g
                t -= LEARNING_RATE * (mt / (1 - b1 ** step)) / (np.sqrt(st / (1 - b2 ** step)) + 1e-8)
        self.bias, self.w, self.v = float(theta[0][0]), theta[1], theta[2]
        return self

    def logits(self, pos: np.ndarray) -> np.ndarray:
        """Log-odds of being in the top fraction, per row of `pos`."""
        enc = self.encoder
        return self.bias + self.w[enc.binary(pos)].sum(axis=1) + enc.dense(pos) @ self.v

    def probability(self, pos: np.ndarray) -> np.ndarray:
        return _sigmoid(self.logits(pos))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning at |z| > 700


class Lfbo:
    """The proposal rule over the valid configs of one space (tuner.samplers.LfboSampler
    feeds it the study's trials)."""

    def __init__(self, valid_configs: Sequence[Config], axes: dict[str, Sequence[int]]) -> None:
        self.encoder = Encoder(axes)
        self.valid = list(valid_configs)
        self._pos = self.encoder.positions(self.valid)
        self._row = {c: i for i, c in enumerate(self.valid)}
        self._cache: tuple[tuple, Classifier | None] | None = None

    def model(self, observations: Sequence[Observation]) -> Classifier | None:
        """The classifier of `observations`, or None while they hold no positive or no negative."""
        key = tuple((o.config, o.status, o.ms) for o in observations)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        known = [o for o in observations if o.config in self._row]
        y, w = labels(known)
        model = None
        if 0 < y.sum() < len(y):
            pos = self._pos[[self._row[o.config] for o in known]]
            model = Classifier(self.encoder).fit(pos, y, w)
        self._cache = (key, model)
        return model

    def propose(self, observations: Sequence[Observation], busy: set[Config],
                rng: np.random.Generator) -> Config | None:
        """The next config: an unmeasured valid config not in `busy` (running or queued), or
        None when none is left. `observations` hold one entry per measured config."""
        open_ = np.ones(len(self.valid), dtype=bool)
        open_[[self._row[c] for c in ({o.config for o in observations} | busy) if c in self._row]] = False
        free = np.flatnonzero(open_)
        if not len(free):
            return None
        explore = rng.random() < EXPLORE  # drawn every time: the stream does not depend on the branch
        order = rng.permutation(free)     # seeded tie-break and sample
        model = None if len(observations) < WARMUP or explore else self.model(observations)
        if model is None:
            return self.valid[int(order[0])]
        candidates = order[:CANDIDATES]
        scores = model.logits(self._pos[candidates])
        return self.valid[int(candidates[int(np.argmax(scores))])]
