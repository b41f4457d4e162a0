"""Deterministic hold-out splits: stratified by sample (classification) or by class (metric learning)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_holdout", "class_holdout"]


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")


def stratified_holdout(targets: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split sample indices into ``(keep, holdout)``, holding out ``fraction`` of every class.

    Per class with ``n`` samples, ``floor(fraction * n + 0.5)`` randomly chosen samples are held out, capped at
    ``n - 1`` so each class keeps at least one sample (a class with a single sample is never held out).
    Classes are visited in sorted order with one ``numpy.random.default_rng(seed)``, so the split depends
    only on ``(targets, fraction, seed)``.

    Returns:
        Two sorted, disjoint index lists whose union is ``range(len(targets))``.
    """
    _check_fraction(fraction)
    y = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    hold: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_hold = min(int(np.floor(fraction * len(idx) + 0.5)), len(idx) - 1)
        if n_hold > 0:
            hold.append(rng.permutation(idx)[:n_hold])
    hold_set = np.zeros(len(y), dtype=bool)
    if hold:
        hold_set[np.concatenate(hold)] = True
    return np.flatnonzero(~hold_set).tolist(), np.flatnonzero(hold_set).tolist()


def class_holdout(targets: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split sample indices into ``(keep, holdout)`` by holding out whole classes (class-disjoint).

    ``floor(fraction * C + 0.5)`` of the ``C`` classes, at least 1 and at most ``C - 1``, are chosen with
    ``numpy.random.default_rng(seed)``; all their samples form the hold-out part. This is the validation
    split that fits metric learning, where test classes are unseen in training.
    """
    _check_fraction(fraction)
    y = np.asarray(targets, dtype=np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("a class-disjoint hold-out needs at least 2 classes")
    n_hold = min(max(int(np.floor(fraction * len(classes) + 0.5)), 1), len(classes) - 1)
    held = np.random.default_rng(seed).permutation(classes)[:n_hold]
    mask = np.isin(y, held)
    return np.flatnonzero(~mask).tolist(), np.flatnonzero(mask).tolist()
