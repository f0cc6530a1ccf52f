"""Read every FLAME release (pickles, chumpy or not) and flamekit's own ``.npz`` model format.

Supported: FLAME 2020 (``generic_model.pkl``, ``male_model.pkl``, ``female_model.pkl``),
FLAME 2023 (``flame2023.pkl``, ``flame2023_no_jaw.pkl``), FLAME 2023 Open
(``flame2023_Open.pkl``), and ``.npz`` files written by :func:`save_flame_npz`.
Pickles go through :mod:`flamekit.model.safe_pickle`, so chumpy is not needed and a file can
never run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from flamekit.io.atomic import atomic_write
from flamekit.model.data import FLAME_JOINT_NAMES, FlameData, FlameFileError, validate_flame_data
from flamekit.model.safe_pickle import UnsafePickleError, restricted_load, to_plain

__all__ = [
    "FLAME_DOWNLOAD_HINT",
    "NPZ_FORMAT",
    "convert_flame_to_npz",
    "guess_release",
    "load_flame",
    "missing_file_error",
    "save_flame_npz",
]

NPZ_FORMAT = "flamekit-flame-model"
NPZ_VERSION = 1
FLAME_DOWNLOAD_HINT = (
    "FLAME is licensed: download it from https://flame.is.tue.mpg.de after accepting its "
    "license (FLAME 2020, FLAME 2023 or FLAME 2023 Open), then register it with "
    "`flamekit models add PATH` (PATH: the downloaded zip, its folder or the .pkl)."
)

_REQUIRED_PICKLE_KEYS = (
    "v_template",
    "f",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
)
_RELEASES = {
    "generic_model": "FLAME 2020 (generic)",
    "male_model": "FLAME 2020 (male)",
    "female_model": "FLAME 2020 (female)",
    "flame2023": "FLAME 2023",
    "flame2023_no_jaw": "FLAME 2023 (no jaw)",
    "flame2023_open": "FLAME 2023 Open",
}
FLAME_IDENTITY_COMPONENTS = 300


def missing_file_error(path: str | os.PathLike, what: str = "FLAME model") -> FlameFileError:
    """The error for a file that does not exist: which file, where to get it, how to register."""
    return FlameFileError(f"{what} file not found: {path}. {FLAME_DOWNLOAD_HINT}")


def guess_release(path: str | os.PathLike) -> str:
    """Name the release from the file name the FLAME website uses (case-insensitive)."""
    stem = Path(path).stem.lower()
    if stem in _RELEASES:
        return _RELEASES[stem]
    if stem.startswith("flame2023_open"):
        return _RELEASES["flame2023_open"]
    return "FLAME (unknown release)"


def _as_float32(name: str, value: object, source: str) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise FlameFileError(f"{source}: '{name}' is not numeric (dtype {array.dtype})")
    return np.ascontiguousarray(array, dtype=np.float32)


def _parents_from_kintree(kintree: np.ndarray, source: str) -> np.ndarray:
    kintree = np.asarray(kintree)
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise FlameFileError(f"{source}: 'kintree_table' has shape {kintree.shape}, expected (2,J)")
    order = kintree[1].astype(np.int64)
    if not np.array_equal(order, np.arange(kintree.shape[1])):
        raise FlameFileError(f"{source}: 'kintree_table' joint ids must be 0..J-1 in order")
    parents = kintree[0].astype(np.int64)
    # Python 2 FLAME files store the root's parent as uint32 -1 (4294967295).
    parents[0] = -1
    return parents


def _from_arrays(raw: dict, source: str, release: str, num_identity: int) -> FlameData:
    missing = [k for k in _REQUIRED_PICKLE_KEYS if k not in raw]
    if missing:
        raise FlameFileError(
            f"{source}: missing {', '.join(missing)} (found keys: {', '.join(sorted(raw))}). "
            f"This is not a FLAME model file. {FLAME_DOWNLOAD_HINT}"
        )
    jreg = np.asarray(raw["J_regressor"])
    faces = np.asarray(raw["f"])
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        if not np.allclose(faces, np.round(faces)):
            raise FlameFileError(f"{source}: 'f' holds non-integer vertex indices")
    data = FlameData(
        v_template=_as_float32("v_template", raw["v_template"], source),
        faces=np.ascontiguousarray(faces, dtype=np.int64),
        shapedirs=_as_float32("shapedirs", raw["shapedirs"], source),
        num_identity=num_identity,
        posedirs=_as_float32("posedirs", raw["posedirs"], source),
        j_regressor=_as_float32("J_regressor", jreg, source),
        lbs_weights=_as_float32("weights", raw["weights"], source),
        parents=_parents_from_kintree(raw["kintree_table"], source),
        release=release,
        source=source,
    )
    if data.shapedirs.ndim == 3 and data.shapedirs.shape[2] < num_identity:
        # Older or trimmed files with identity components only.
        data.num_identity = data.shapedirs.shape[2]
    return data


def _load_pickle(path: Path) -> FlameData:
    source = str(path)
    try:
        raw = to_plain(restricted_load(path))
    except UnsafePickleError as error:
        raise FlameFileError(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
        raise FlameFileError(
            f"{source} is not a readable FLAME pickle ({type(error).__name__}: {error}); "
            f"the file may be truncated. {FLAME_DOWNLOAD_HINT}"
        ) from None
    if not isinstance(raw, dict):
        raise FlameFileError(f"{source} holds a {type(raw).__name__}, not a FLAME model dict")
    return _from_arrays(raw, source, guess_release(path), FLAME_IDENTITY_COMPONENTS)


def _scalar(npz: np.lib.npyio.NpzFile, key: str, default=None):
    return npz[key].item() if key in npz.files else default


def _load_npz(path: Path) -> FlameData:
    source = str(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise FlameFileError(f"{source} is not a readable .npz file ({error})") from None
    with npz:
        if _scalar(npz, "format") != NPZ_FORMAT:
            raise FlameFileError(
                f"{source} is not a flamekit model file (no format='{NPZ_FORMAT}' entry; keys: "
                f"{', '.join(npz.files)}). Convert a FLAME pickle with "
                "`flamekit models convert MODEL.pkl OUT.npz`."
            )
        version = int(_scalar(npz, "version", 0))
        if version > NPZ_VERSION:
            raise FlameFileError(
                f"{source} was written by a newer flamekit (model format version {version}; "
                f"this one reads up to {NPZ_VERSION}); upgrade flamekit"
            )
        try:
            raw = {k: npz[k] for k in _REQUIRED_PICKLE_KEYS}
        except KeyError as error:
            raise FlameFileError(f"{source}: missing key {error}") from None
        data = _from_arrays(
            raw,
            source,
            str(_scalar(npz, "release", "FLAME (unknown release)")),
            int(_scalar(npz, "num_identity", FLAME_IDENTITY_COMPONENTS)),
        )
        data.is_flame = bool(_scalar(npz, "is_flame", True))
        if "joint_names" in npz.files:
            data.joint_names = tuple(str(n) for n in npz["joint_names"])
        if "vt" in npz.files and "ft" in npz.files:
            data.uvs = np.ascontiguousarray(npz["vt"], dtype=np.float32)
            data.uv_faces = np.ascontiguousarray(npz["ft"], dtype=np.int64)
    return data


def load_flame(path: str | os.PathLike) -> FlameData:
    """Load a FLAME model (``.pkl`` of any release, or flamekit ``.npz``) as validated arrays.

    Raises:
        FlameFileError: missing file (with where to get it), unreadable or tampered file
            (naming the refused class), or wrong keys/shapes (naming them).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise missing_file_error(path)
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK"):
        data = _load_npz(path)
    elif head[:1] == b"\x80" or path.suffix.lower() == ".pkl":
        data = _load_pickle(path)
    else:
        raise FlameFileError(
            f"{path} is neither a FLAME pickle nor a flamekit .npz model. {FLAME_DOWNLOAD_HINT}"
        )
    return validate_flame_data(data)


def _atomic_savez(path: Path, arrays: dict) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def save_flame_npz(data: FlameData, path: str | os.PathLike) -> Path:
    """Write ``data`` as flamekit's plain-array ``.npz`` (no pickle); atomic."""
    path = Path(path)
    validate_flame_data(data)
    kintree = np.stack([data.parents, np.arange(data.num_joints)]).astype(np.int64)
    arrays = {
        "format": np.array(NPZ_FORMAT),
        "version": np.array(NPZ_VERSION),
        "release": np.array(data.release),
        "is_flame": np.array(data.is_flame),
        "num_identity": np.array(data.num_identity),
        "joint_names": np.array(list(data.joint_names or FLAME_JOINT_NAMES)),
        "v_template": data.v_template,
        "f": data.faces,
        "shapedirs": data.shapedirs,
        "posedirs": data.posedirs,
        "J_regressor": data.j_regressor,
        "weights": data.lbs_weights,
        "kintree_table": kintree,
    }
    if data.uvs is not None:
        arrays["vt"] = data.uvs
        arrays["ft"] = data.uv_faces
    _atomic_savez(path, arrays)
    return path


def convert_flame_to_npz(
    source: str | os.PathLike, destination: str | os.PathLike, uv_template: str | None = None
) -> Path:
    """Convert any supported model file to flamekit ``.npz``; optionally add UVs from an OBJ."""
    data = load_flame(source)
    if uv_template is not None:
        from flamekit.model.uv import load_uv_layout

        layout = load_uv_layout(uv_template)
        data.uvs, data.uv_faces = layout.uvs_numpy(), layout.uv_faces_numpy()
    return save_flame_npz(data, destination)
