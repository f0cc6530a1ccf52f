"""A restricted unpickler for FLAME's pickles: plain data only, never code.

FLAME's ``.pkl`` files were written by Python 2 with chumpy objects and a scipy sparse
``J_regressor``; ``landmark_embedding.npy`` is a numpy-saved pickle holding torch tensors.
A normal ``pickle.load`` would import chumpy (broken on numpy >= 1.24) and would run any
callable a tampered file names. This unpickler resolves only an allowlist of globals and
maps chumpy and scipy classes to inert stand-ins that just record their state; anything
else is refused with :class:`UnsafePickleError` naming the class, before it is imported.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

__all__ = ["UnsafePickleError", "restricted_load", "to_plain"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a class or function outside the allowlist."""


class _StateRecorder:
    """Stand-in for a foreign class: keeps the pickled state, runs nothing."""

    kind = "object"
    state: Any = None  # class default: NEWOBJ skips __init__ and BUILD may be absent

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ChumpyObject(_StateRecorder):
    kind = "chumpy"
    class_name = "chumpy.ch.Ch"


class _SparseMatrix(_StateRecorder):
    kind = "sparse"
    class_name = "scipy.sparse.csc_matrix"


def _chumpy_class(module: str, name: str) -> type:
    return type(name, (_ChumpyObject,), {"class_name": f"{module}.{name}"})


def _sparse_class(module: str, name: str) -> type:
    return type(name, (_SparseMatrix,), {"class_name": f"{module}.{name}"})


def _numpy_core(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to the stand-ins and ndarray."""
    if base is object and isinstance(cls, type) and issubclass(cls, _StateRecorder):
        return cls()
    if isinstance(cls, type) and issubclass(cls, np.ndarray):
        return np.ndarray.__new__(cls, state)
    raise UnsafePickleError(f"refusing to reconstruct {cls!r} on base {base!r}")


def _load_torch_storage(data: bytes) -> Any:
    """Torch storages inside a plain pickle are themselves torch-saved: load weights-only."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _torch_global(name: str) -> Any:
    import torch._utils

    return getattr(torch._utils, name)


_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, allow_torch: bool) -> None:
        super().__init__(file, encoding="latin1")
        self._allow_torch = allow_torch

    def find_class(self, module: str, name: str) -> Any:  # noqa: C901 - one allowlist
        # Python 2 module names arrive unmapped because find_class is overridden.
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module in ("__builtin__", "builtins") and name in ("object", "set", "frozenset"):
            return {"object": object, "set": set, "frozenset": frozenset}[name]
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            return _numpy_core(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module.startswith("numpy") and name.endswith("DType") and module.endswith("dtypes"):
            return getattr(np.dtypes, name)
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_class(module, name)
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and (
            name in _SPARSE_NAMES
        ):
            return _sparse_class(module, name)
        if self._allow_torch:
            if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _torch_global(name)
            if module == "torch.storage" and name == "_load_from_bytes":
                return _load_torch_storage
        raise UnsafePickleError(
            f"refusing to load '{module}.{name}': it is not a data type a FLAME file uses, "
            "and unpickling it could run code. The file is not a FLAME file or was tampered with."
        )


def restricted_load(source: str | bytes | BinaryIO, *, allow_torch: bool = False) -> Any:
    """Unpickle ``source`` (a path, bytes or binary file) with the allowlist above.

    ``allow_torch`` additionally accepts tensors (``landmark_embedding.npy``); their storages
    are read with ``torch.load(weights_only=True)``.
    """
    if isinstance(source, bytes):
        return _RestrictedUnpickler(io.BytesIO(source), allow_torch).load()
    if isinstance(source, str):
        with open(source, "rb") as handle:
            return _RestrictedUnpickler(handle, allow_torch).load()
    if hasattr(source, "read"):
        return _RestrictedUnpickler(source, allow_torch).load()
    with open(source, "rb") as handle:  # os.PathLike
        return _RestrictedUnpickler(handle, allow_torch).load()


def _sparse_to_dense(obj: _SparseMatrix) -> np.ndarray:
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = state.get("_shape", state.get("shape"))
    if shape is None:
        raise UnsafePickleError(f"sparse matrix ({obj.class_name}) without a shape")
    rows, cols = (int(s) for s in shape)
    data = np.asarray(to_plain(state.get("data")), dtype=np.float64)
    dense = np.zeros((rows, cols), dtype=np.float64)
    kind = obj.class_name.rsplit(".", 1)[-1][:3]
    if kind == "coo":
        r = np.asarray(to_plain(state.get("row")), dtype=np.int64)
        c = np.asarray(to_plain(state.get("col")), dtype=np.int64)
        np.add.at(dense, (r, c), data)
        return dense
    indices = np.asarray(to_plain(state["indices"]), dtype=np.int64)
    indptr = np.asarray(to_plain(state["indptr"]), dtype=np.int64)
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if kind == "csc":
        np.add.at(dense, (indices, major), data)
    else:
        np.add.at(dense, (major, indices), data)
    return dense


def to_plain(obj: Any) -> Any:
    """Replace stand-ins by numpy arrays, recursively through dicts, lists and tuples.

    chumpy ``Ch`` objects become their value ``x``; sparse matrices become dense arrays.

    Raises:
        UnsafePickleError: a chumpy expression (not a plain ``Ch`` holding an array).
    """
    if isinstance(obj, _ChumpyObject):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "x" not in state:
            raise UnsafePickleError(
                f"{obj.class_name} is a chumpy expression, not a stored array; flamekit reads "
                "only plain chumpy values. Convert the file with a chumpy installation first."
            )
        return np.asarray(to_plain(state["x"]))
    if isinstance(obj, _SparseMatrix):
        return _sparse_to_dense(obj)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        if obj.shape == ():
            return to_plain(obj.item())
        return np.array([to_plain(v) for v in obj.ravel()], dtype=object).reshape(obj.shape)
    return obj
