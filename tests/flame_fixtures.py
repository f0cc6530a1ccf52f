"""FLAME-format test models: the shared test model when present, else a synthetic stand-in.

The synthetic model has FLAME's counts and a plausible skeleton so loader tests run on a
fresh machine; LBS tests that need meaningful skinning weights use the shared model or the
built-in demo head.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from flamekit.model.data import FLAME_FACES, FLAME_VERTICES


def synthetic_flame_dict(seed: int = 0) -> dict:
    """A dict with FLAME's pickle keys, shapes and dtypes (random but well-formed values)."""
    rng = np.random.default_rng(seed)
    v = FLAME_VERTICES
    weights = rng.random((v, 5))
    weights /= weights.sum(1, keepdims=True)
    jreg = rng.random((5, v))
    jreg /= jreg.sum(1, keepdims=True)
    return {
        "v_template": rng.normal(0, 0.05, (v, 3)),
        "f": rng.integers(0, v, (FLAME_FACES, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0, 1e-3, (v, 3, 400)).astype(np.float32),
        "posedirs": rng.normal(0, 1e-4, (v, 3, 36)).astype(np.float32),
        "J_regressor": jreg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def shared_flame_dict(shared: Path) -> dict | None:
    """The shared test model as a plain dict (scipy's J_regressor made dense), or None."""
    path = shared / "flame_test_model" / "flame2023_open_test.pkl"
    if not path.is_file():
        return None
    from flamekit.model.safe_pickle import restricted_load, to_plain

    return to_plain(restricted_load(path))


def write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)
    return path
