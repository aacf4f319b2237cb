"""Where the NumPy-initialised parameters draw their random numbers.

Every NumPy initialiser in `vglaw.models` asks `init_rng()` for a generator seeded from NumPy's
global state, so `np.random.seed(seed)` before building a model (as `vglaw.train` does with the run's
seed, next to `mindspore.set_seed`) makes the initial weights a function of the seed: two seeds give
two different models, one seed the same one. Each call draws a fresh seed, so two parameters of the
same shape (P and Q, two blocks) never start as copies of one stream.
"""

from __future__ import annotations

import numpy as np

__all__ = ["init_rng"]


def init_rng() -> np.random.Generator:
    """A generator seeded from NumPy's global RNG (one draw from it)."""
    return np.random.default_rng(int(np.random.randint(0, 2 ** 31 - 1)))
