"""Linear albedo (texture) spaces: one module for every texture-space file flamekit reads.

Whatever the file (FLAME's ``FLAME_texture.npz``, the BFM-derived ``FLAME_albedo_from_BFM.npz``
or flamekit's own ``.npz``), :func:`load_texture_space` returns a :class:`TextureSpace` with the
same conventions, so fitting code never sees a file format:

* RGB, values in 0..1, channels first: maps are [B,3,H,W];
* row 0 of a map is the top of the texture image (v = 1), like the renderer's albedo maps;
* albedo = mean + sum_k coeff_k * component_k, for every format.

The original files store (H,W,3) maps in BGR order (and FLAME's in 0..255); the loader converts
them once, streaming the large component matrix so that only the kept components are ever
materialised (the real ``FLAME_texture.npz`` holds 512*512*3*200 values).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib import format as npy_format

from flamekit.io.atomic import atomic_write
from flamekit.model.data import FlameFileError

__all__ = [
    "FLAMEKIT_TEXTURE_FORMAT",
    "FLAMEKIT_TEXTURE_VERSION",
    "TextureSpace",
    "export_flame_texture_npz",
    "load_texture_space",
    "save_texture_space",
]

FLAMEKIT_TEXTURE_FORMAT = "flamekit-texture-space"
FLAMEKIT_TEXTURE_VERSION = 1

FORMAT_FLAME = "FLAME_texture"
FORMAT_BFM = "FLAME_albedo_from_BFM"
FORMAT_FLAMEKIT = FLAMEKIT_TEXTURE_FORMAT

_DOWNLOAD_HINT = (
    "FLAME texture spaces (FLAME_texture.npz, FLAME_albedo_from_BFM.npz) can be downloaded from "
    "https://flame.is.tue.mpg.de after accepting the FLAME license; "
    "`flamekit models add PATH` registers a downloaded file with flamekit."
)
_EXPECTED_KEYS = (
    "one of: {'mean', 'tex_dir'[, 'vt', 'ft']} (FLAME_texture.npz), "
    "{'MU', 'PC'} (FLAME_albedo_from_BFM.npz), or "
    f"{{'format'='{FLAMEKIT_TEXTURE_FORMAT}', 'version', 'mean', 'components'[, 'std', 'vt', "
    "'ft', 'provenance']} (flamekit)"
)
_CHUNK_BYTES = 32 << 20  # streaming granularity when reading / converting the component matrix


class TextureSpace(torch.nn.Module):
    """A linear RGB albedo model: coefficients [B,K] -> albedo maps [B,3,H,W].

    ``forward`` does not clamp its output to 0..1: clamping would zero the gradient of texels
    that leave the range, which stalls fitting; clamp when displaying or saving instead.

    Buffers (moved by ``.to()``; ``None`` when unknown):
        mean: [3,H,W] RGB mean albedo, 0..1.
        components: [K,3,H,W] principal directions (one unit of coefficient each).
        std: [K] standard deviation of each coefficient over the training data, or None.
        uvs: [T,2] float32 texture coordinates (OBJ convention, v up), or None.
        uv_faces: [F,3] int64 indices into ``uvs``, or None.

    Attributes:
        provenance: free-form dict describing how the space was built / where it came from.
        source: the file it was loaded from ("" when built in memory).
        format: the file format it was read from (``FLAME_texture``, ``FLAME_albedo_from_BFM``,
            ``flamekit-texture-space``) or ``"memory"``.
    """

    mean: torch.Tensor
    components: torch.Tensor
    std: torch.Tensor | None
    uvs: torch.Tensor | None
    uv_faces: torch.Tensor | None

    def __init__(
        self,
        mean: torch.Tensor,
        components: torch.Tensor,
        std: torch.Tensor | None = None,
        uvs: torch.Tensor | None = None,
        uv_faces: torch.Tensor | None = None,
        provenance: dict[str, Any] | None = None,
        source: str = "",
        format: str = "memory",
    ) -> None:
        super().__init__()
        if mean.dim() != 3 or mean.shape[0] != 3:
            raise ValueError(f"mean must be [3,H,W], got {tuple(mean.shape)}")
        if components.dim() != 4 or components.shape[1:] != mean.shape:
            raise ValueError(
                f"components must be [K,{','.join(map(str, mean.shape))}], "
                f"got {tuple(components.shape)}"
            )
        if not mean.is_floating_point() or components.dtype != mean.dtype:
            raise ValueError(
                f"mean and components must share a floating dtype, got {mean.dtype} and "
                f"{components.dtype}"
            )
        k = components.shape[0]
        if std is not None and std.shape != (k,):
            raise ValueError(f"std must be [{k}], got {tuple(std.shape)}")
        if (uvs is None) != (uv_faces is None):
            raise ValueError("uvs and uv_faces must be given together")
        if uvs is not None:
            if uvs.dim() != 2 or uvs.shape[1] != 2:
                raise ValueError(f"uvs must be [T,2], got {tuple(uvs.shape)}")
            if uv_faces.dim() != 2 or uv_faces.shape[1] != 3:
                raise ValueError(f"uv_faces must be [F,3], got {tuple(uv_faces.shape)}")
            uvs = uvs.to(torch.float32).contiguous()
            uv_faces = uv_faces.to(torch.int64).contiguous()
        self.register_buffer("mean", mean.contiguous())
        self.register_buffer("components", components.contiguous())
        self.register_buffer("std", None if std is None else std.to(mean.dtype).contiguous())
        self.register_buffer("uvs", uvs)
        self.register_buffer("uv_faces", uv_faces)
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.source = str(source)
        self.format = str(format)

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """(H, W) of the albedo maps."""
        return int(self.mean.shape[1]), int(self.mean.shape[2])

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Albedo maps for a batch of coefficients.

        Args:
            coeffs: [B,K'] with K' <= K; missing trailing coefficients count as 0. Cast to the
                space's dtype (load with ``dtype=torch.float64`` for double precision).

        Returns:
            [B,3,H,W] RGB albedo, nominally 0..1 but not clamped (gradients must flow).
        """
        if coeffs.dim() != 2:
            raise ValueError(
                f"coefficients must be [B,K] (K <= {self.num_components}), "
                f"got shape {tuple(coeffs.shape)}"
            )
        used = coeffs.shape[1]
        if used > self.num_components:
            raise ValueError(
                f"got {used} texture coefficients but the space has only {self.num_components} "
                f"components (load it with more, or pass coeffs[:, :{self.num_components}])"
            )
        batch = coeffs.shape[0]
        flat_mean = self.mean.reshape(1, -1)
        if used == 0:
            out = flat_mean.expand(batch, -1).clone()
        else:
            basis = self.components[:used].reshape(used, -1)  # a view: components is contiguous
            out = torch.addmm(flat_mean, coeffs.to(basis.dtype), basis)
        return out.view(batch, *self.mean.shape)

    def mean_map(self, batch: int = 1) -> torch.Tensor:
        """[batch,3,H,W] copy of the mean albedo (the map for all-zero coefficients)."""
        return self.mean.unsqueeze(0).repeat(batch, 1, 1, 1)

    def extra_repr(self) -> str:
        h, w = self.resolution
        return f"K={self.num_components}, resolution=({h}, {w}), format={self.format!r}"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _file_error(path: Path, message: str) -> FlameFileError:
    return FlameFileError(f"{path}: {message}")


class _Archive:
    """An ``.npz`` opened with ``np.load(allow_pickle=False)``, with streamed member access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "no such file"
            raise _file_error(path, f"{what}. {_DOWNLOAD_HINT}")
        if not zipfile.is_zipfile(path):
            with path.open("rb") as handle:
                magic = handle.read(len(npy_format.MAGIC_PREFIX))
            what = (
                "is a single .npy array, not an .npz archive"
                if magic == npy_format.MAGIC_PREFIX
                else "is not an .npz (zip) archive: the file is damaged or not a texture space"
            )
            raise _file_error(path, f"{what}; expected keys {_EXPECTED_KEYS}. {_DOWNLOAD_HINT}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _file_error(
                path,
                f"cannot be read as an .npz texture space ({exc}). The file is damaged or not a "
                f"texture space; expected keys {_EXPECTED_KEYS}. {_DOWNLOAD_HINT}",
            ) from exc
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _file_error(
                path,
                f"is a single .npy array of shape {getattr(loaded, 'shape', '?')}, not an .npz "
                f"archive; expected keys {_EXPECTED_KEYS}. {_DOWNLOAD_HINT}",
            )
        self.npz = loaded
        self.keys = sorted(loaded.files)

    def close(self) -> None:
        self.npz.close()

    def __contains__(self, key: str) -> bool:
        return key in self.npz.files

    def array(self, key: str) -> np.ndarray:
        """Read one (small) member fully."""
        try:
            return self.npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _file_error(
                self.path, f"member '{key}' is damaged or unreadable ({exc})"
            ) from exc

    def header(self, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """Shape, Fortran order and dtype of a member, without reading its data."""
        with self._open(key) as handle:
            return self._read_header(handle, key)

    def _open(self, key: str):
        names = set(self.npz.zip.namelist())
        member = f"{key}.npy" if f"{key}.npy" in names else key
        try:
            return self.npz.zip.open(member)
        except (KeyError, OSError, zipfile.BadZipFile) as exc:
            raise _file_error(self.path, f"member '{key}' is unreadable ({exc})") from exc

    def _read_header(self, handle, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        try:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _file_error(self.path, f"member '{key}' has a damaged header ({exc})") from exc
        if dtype.hasobject or dtype.kind not in "biuf":
            raise _file_error(
                self.path, f"member '{key}' has dtype {dtype}, expected a numeric array"
            )
        return tuple(int(s) for s in shape), bool(fortran), dtype

    def stream(self, key: str, count: int, chunk: int) -> Any:
        """Yield the first ``count`` elements (C order) of a member, ``chunk`` elements at a time.

        Only valid for C-ordered members; raises FlameFileError when the data is truncated.
        """
        with self._open(key) as handle:
            _, _, dtype = self._read_header(handle, key)
            done = 0
            while done < count:
                n = min(chunk, count - done)
                try:
                    raw = handle.read(n * dtype.itemsize)
                except (OSError, EOFError, zipfile.BadZipFile) as exc:
                    raise _file_error(self.path, f"member '{key}' is damaged ({exc})") from exc
                if len(raw) != n * dtype.itemsize:
                    raise _file_error(self.path, f"member '{key}' is truncated")
                yield np.frombuffer(raw, dtype=dtype)
                done += n


def _square_side(path: Path, key: str, size: int) -> int:
    side = int(round((size / 3) ** 0.5))
    if size <= 0 or 3 * side * side != size:
        raise _file_error(
            path,
            f"'{key}' has {size} values, which is not 3*H*H for a square H x H RGB texture map",
        )
    return side


def _check_finite(path: Path, key: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise _file_error(path, f"'{key}' contains NaN or infinite values")


def _read_uv_layout(archive: _Archive) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    has_vt, has_ft = "vt" in archive, "ft" in archive
    if not has_vt and not has_ft:
        return None, None
    if has_vt != has_ft:
        raise _file_error(archive.path, "'vt' and 'ft' must be stored together")
    vt = np.asarray(archive.array("vt"))
    ft = np.asarray(archive.array("ft"))
    if vt.ndim != 2 or vt.shape[1] != 2 or vt.dtype.kind not in "biuf":
        raise _file_error(archive.path, f"'vt' has shape {vt.shape}, expected (T,2)")
    if ft.ndim != 2 or ft.shape[1] != 3 or ft.dtype.kind not in "biu":
        raise _file_error(
            archive.path, f"'ft' has shape {ft.shape} and dtype {ft.dtype}, expected (F,3) integers"
        )
    if ft.size and (ft.min() < 0 or ft.max() >= vt.shape[0]):
        raise _file_error(archive.path, "'ft' indexes past the end of 'vt'")
    _check_finite(archive.path, "vt", vt)
    return (
        torch.from_numpy(np.ascontiguousarray(vt, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(ft, dtype=np.int64)),
    )


def _keep_count(path: Path, available: int, requested: int | None) -> int:
    if requested is None:
        return available
    if requested < 0:
        raise ValueError(f"num_components must be >= 0, got {requested}")
    if requested > available:
        raise _file_error(
            path, f"num_components={requested} requested but the file has only {available}"
        )
    return int(requested)


def _read_hwc_space(
    archive: _Archive, mean_key: str, basis_key: str, scale: float, keep: int | None, np_dtype
) -> tuple[np.ndarray, np.ndarray, int]:
    """Read a BGR (H,W,3)-ordered space into RGB [3,H,W] mean and [k,3,H,W] components.

    The basis member is interpreted, like the original fitting code, as a C-ordered
    (H*W*3, K) matrix whatever its stored shape; it is streamed in whole image rows so that only
    the kept columns are ever converted.
    """
    path = archive.path
    mean = np.asarray(archive.array(mean_key))
    if mean.dtype.kind not in "biuf":
        raise _file_error(path, f"'{mean_key}' has dtype {mean.dtype}, expected numbers")
    side = _square_side(path, mean_key, mean.size)
    n = mean.size
    _check_finite(path, mean_key, mean)
    mean_rgb = (mean.reshape(side, side, 3)[:, :, ::-1].transpose(2, 0, 1) / scale).astype(np_dtype)

    shape, fortran, dtype = archive.header(basis_key)
    total = int(np.prod(shape, dtype=np.int64))
    if total == 0 or total % n:
        raise _file_error(
            path,
            f"'{basis_key}' has shape {shape} ({total} values), which is not "
            f"({side},{side},3,K) / ({n},K) for the {side}x{side} '{mean_key}'",
        )
    available = total // n
    k = _keep_count(path, available, keep)
    out = np.empty((k, 3, side, side), dtype=np_dtype)
    if k == 0:
        return mean_rgb, out, available

    def place(rows: np.ndarray, h0: int) -> None:
        # rows: (h, W, 3, K_file) source layout, BGR -> RGB, to [k,3,h,W]
        block = rows[..., :k]
        _check_finite(path, basis_key, block)
        h1 = h0 + block.shape[0]
        out[:, :, h0:h1, :] = (block[:, :, ::-1, :].transpose(3, 2, 0, 1) / scale).astype(np_dtype)

    if fortran:
        # Rare: a column-major file cannot be streamed by rows; load it whole.
        full = np.asarray(archive.array(basis_key)).reshape(side, side, 3, available, order="C")
        place(full, 0)
        return mean_rgb, out, available

    row_values = side * 3 * available
    rows_per_chunk = max(1, _CHUNK_BYTES // max(1, row_values * dtype.itemsize))
    h0 = 0
    for flat in archive.stream(basis_key, total, rows_per_chunk * row_values):
        rows = flat.reshape(-1, side, 3, available)
        place(rows, h0)
        h0 += rows.shape[0]
    return mean_rgb, out, available


def _decode_str(archive: _Archive, key: str) -> str:
    value = np.asarray(archive.array(key))
    if value.dtype.kind not in "US" or value.size != 1:
        raise _file_error(
            archive.path, f"'{key}' must be a string, got {value.dtype} {value.shape}"
        )
    item = value.reshape(()).item()
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


def _read_flamekit(
    archive: _Archive, keep: int | None, np_dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any], int]:
    path = archive.path
    version_arr = np.asarray(archive.array("version")) if "version" in archive else None
    if version_arr is None or version_arr.size != 1 or version_arr.dtype.kind not in "iu":
        raise _file_error(path, "flamekit texture space without an integer 'version'")
    version = int(version_arr.reshape(()))
    if version > FLAMEKIT_TEXTURE_VERSION:
        raise _file_error(
            path,
            f"was written by a newer flamekit (texture-space format version {version}); this "
            f"flamekit reads versions up to {FLAMEKIT_TEXTURE_VERSION}. Upgrade flamekit.",
        )
    if version < 1:
        raise _file_error(path, f"invalid texture-space format version {version}")
    for key in ("mean", "components"):
        if key not in archive:
            raise _file_error(
                path, f"flamekit texture space lacks '{key}'; found keys {archive.keys}"
            )
    mean = np.asarray(archive.array("mean"))
    if mean.ndim != 3 or mean.shape[0] != 3 or mean.dtype.kind != "f":
        raise _file_error(path, f"'mean' has shape {mean.shape}, expected float (3,H,W)")
    _check_finite(path, "mean", mean)
    shape, fortran, _ = archive.header("components")
    if len(shape) != 4 or tuple(shape[1:]) != mean.shape:
        raise _file_error(
            path, f"'components' has shape {shape}, expected (K,{','.join(map(str, mean.shape))})"
        )
    available = shape[0]
    k = _keep_count(path, available, keep)
    per = int(mean.size)
    out = np.empty((k, *mean.shape), dtype=np_dtype)
    if k:
        if fortran:
            out[:] = np.asarray(archive.array("components"))[:k]
        else:
            flat_out = out.reshape(k, per)
            chunk = max(per, (_CHUNK_BYTES // (per * 4)) * per)
            done = 0
            for flat in archive.stream("components", k * per, chunk):
                rows = flat.reshape(-1, per)
                flat_out[done : done + rows.shape[0]] = rows
                done += rows.shape[0]
        _check_finite(path, "components", out)
    std = None
    if "std" in archive:
        std = np.asarray(archive.array("std"))
        if std.shape != (available,):
            raise _file_error(path, f"'std' has shape {std.shape}, expected ({available},)")
        std = std[:k].astype(np_dtype)
    provenance: dict[str, Any] = {}
    if "provenance" in archive:
        text = _decode_str(archive, "provenance")
        try:
            provenance = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise _file_error(path, f"'provenance' is not valid JSON ({exc})") from exc
        if not isinstance(provenance, dict):
            raise _file_error(path, "'provenance' must be a JSON object")
    return mean.astype(np_dtype, copy=False), out, std, provenance, available


def _resize(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [N,3,H,W] maps to size x size, bilinear, antialiased when shrinking, in chunks."""
    h, w = maps.shape[-2:]
    if (h, w) == (size, size):
        return maps
    shrink = size < h or size < w
    out = maps.new_empty(maps.shape[0], 3, size, size)
    step = max(1, _CHUNK_BYTES // max(1, 3 * h * w * maps.element_size()))
    for i in range(0, maps.shape[0], step):
        out[i : i + step] = F.interpolate(
            maps[i : i + step],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )
    return out


def load_texture_space(
    path: str | os.PathLike,
    num_components: int | None = None,
    resolution: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> TextureSpace:
    """Load any supported texture-space file (format detected from its keys, not its name).

    Args:
        path: ``FLAME_texture.npz``, ``FLAME_albedo_from_BFM.npz`` or a flamekit ``.npz``.
        num_components: keep the first K components (default: all); more than the file has is
            an error. Only the kept components are read into memory.
        resolution: resize the maps to resolution x resolution (bilinear, antialiased when
            downsampling) — the space stays linear, so coefficients keep their meaning.
        dtype: floating dtype of the returned buffers.

    Raises:
        FlameFileError: missing, unreadable, damaged or unrecognised file (the message names the
            file, the keys found and the keys expected).
    """
    path = Path(path)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if resolution is not None and resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    archive = _Archive(path)
    try:
        keys = set(archive.keys)
        std = None
        if "format" in keys:
            fmt = _decode_str(archive, "format")
            if fmt != FLAMEKIT_TEXTURE_FORMAT:
                raise _file_error(
                    path,
                    f"has format '{fmt}', expected '{FLAMEKIT_TEXTURE_FORMAT}'; found keys "
                    f"{archive.keys}, expected {_EXPECTED_KEYS}",
                )
            mean, comps, std, provenance, available = _read_flamekit(
                archive, num_components, np_dtype
            )
            format_name = FORMAT_FLAMEKIT
        elif {"mean", "tex_dir"} <= keys:
            mean, comps, available = _read_hwc_space(
                archive, "mean", "tex_dir", 255.0, num_components, np_dtype
            )
            format_name = FORMAT_FLAME
            provenance = {"stored_as": "FLAME_texture.npz: (H,W,3) BGR, 0..255"}
        elif {"MU", "PC"} <= keys:
            mean, comps, available = _read_hwc_space(
                archive, "MU", "PC", 1.0, num_components, np_dtype
            )
            format_name = FORMAT_BFM
            provenance = {"stored_as": "FLAME_albedo_from_BFM.npz: (H,W,3) BGR, 0..1"}
        else:
            raise _file_error(
                path,
                f"is not a texture space: found keys {archive.keys}, expected {_EXPECTED_KEYS}. "
                f"{_DOWNLOAD_HINT}",
            )
        uvs, uv_faces = _read_uv_layout(archive)
    finally:
        archive.close()

    if format_name != FORMAT_FLAMEKIT:
        provenance.update(
            source_file=str(path),
            components_in_file=int(available),
            resolution_in_file=int(mean.shape[1]),
        )
    mean_t = torch.from_numpy(mean)
    comps_t = torch.from_numpy(comps)
    if resolution is not None:
        mean_t = _resize(mean_t.unsqueeze(0), resolution)[0]
        comps_t = _resize(comps_t, resolution)
    return TextureSpace(
        mean_t.to(dtype),
        comps_t.to(dtype),
        std=None if std is None else torch.from_numpy(std).to(dtype),
        uvs=uvs,
        uv_faces=uv_faces,
        provenance=provenance,
        source=str(path),
        format=format_name,
    )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------




def _np32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


def _uv_arrays(space: TextureSpace) -> dict[str, np.ndarray]:
    if space.uvs is None or space.uv_faces is None:
        return {}
    return {
        "vt": space.uvs.detach().cpu().to(torch.float32).numpy(),
        "ft": space.uv_faces.detach().cpu().to(torch.int64).numpy(),
    }


def save_texture_space(
    space: TextureSpace, path: str | os.PathLike, compressed: bool = False
) -> Path:
    """Write ``space`` in flamekit's texture-space format (version 1), atomically.

    Keys: ``format``, ``version``, ``mean`` (3,H,W) and ``components`` (K,3,H,W) float32 RGB 0..1,
    ``std`` (K,) when known, ``vt``/``ft`` when known, and ``provenance`` (JSON; the flamekit
    version and the save time are added when absent).
    """
    from flamekit import __version__

    path = Path(path)
    provenance = dict(space.provenance)
    provenance.setdefault("flamekit_version", __version__)
    provenance.setdefault(
        "saved_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    if space.source and space.format != FORMAT_FLAMEKIT:
        provenance.setdefault("source_space", space.source)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FLAMEKIT_TEXTURE_FORMAT),
        "version": np.array(FLAMEKIT_TEXTURE_VERSION, dtype=np.int64),
        "mean": _np32(space.mean),
        "components": _np32(space.components),
        "provenance": np.array(json.dumps(provenance, default=str)),
        **_uv_arrays(space),
    }
    if space.std is not None:
        arrays["std"] = _np32(space.std)
    saver = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda handle: saver(handle, **arrays))


def export_flame_texture_npz(space: TextureSpace, path: str | os.PathLike) -> Path:
    """Write ``space`` in the ``FLAME_texture.npz`` layout so FLAME-based tools can read it.

    ``mean`` (H,W,3) and ``tex_dir`` (H,W,3,K) in 0..255, BGR, float32, plus ``vt``/``ft`` when
    known. Tools that hard-code FLAME's 512x512 maps and K=200 need a space of that size.
    """
    path = Path(path)
    h, w = space.resolution
    k = space.num_components
    mean = _np32(space.mean)[::-1].transpose(1, 2, 0) * np.float32(255.0)
    tex_dir = np.empty((h, w, 3, k), dtype=np.float32)
    comps = space.components.detach()
    step = max(1, _CHUNK_BYTES // max(1, 3 * h * w * 4))
    for i in range(0, k, step):
        block = _np32(comps[i : i + step])  # [k',3,H,W] RGB
        tex_dir[..., i : i + block.shape[0]] = block[:, ::-1].transpose(2, 3, 1, 0) * np.float32(
            255.0
        )
    arrays = {"mean": np.ascontiguousarray(mean), "tex_dir": tex_dir, **_uv_arrays(space)}
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))
