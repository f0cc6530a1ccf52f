"""Where users' FLAME files live: a registry in ``$FLAMEKIT_HOME`` (default ``~/.flamekit``).

``flamekit models add PATH`` identifies each file by its content (a FLAME model of some
release, the 68-landmark embedding, the MediaPipe embedding, a texture space, a template
mesh with UVs), copies it under ``$FLAMEKIT_HOME/models/<name>/`` with its SHA-256 and
records it in ``registry.json``. Commands then find files by name, with this precedence:
an explicit ``--model``/``--texture-space`` value (a name or a path), then the environment
(``FLAMEKIT_MODEL``, ``FLAMEKIT_LANDMARKS``, ``FLAMEKIT_TEXTURE_SPACE``), then the default
entry of that kind. With no FLAME model anywhere, :func:`load_head` falls back to the
built-in demo head (not FLAME) with a warning, so a fresh machine runs the whole pipeline.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from flamekit.io.atomic import atomic_write
from flamekit.model.data import FlameFileError
from flamekit.model.loader import FLAME_DOWNLOAD_HINT, guess_release

__all__ = [
    "KINDS",
    "DemoHeadWarning",
    "Registry",
    "RegistryEntry",
    "flamekit_home",
    "identify_file",
    "load_head",
    "resolve_file",
]

KINDS = ("flame", "landmarks", "mediapipe", "texture-space", "uv-template")
ENV_HOME = "FLAMEKIT_HOME"
ENV_BY_KIND = {
    "flame": "FLAMEKIT_MODEL",
    "landmarks": "FLAMEKIT_LANDMARKS",
    "texture-space": "FLAMEKIT_TEXTURE_SPACE",
}
_REGISTRY_FILE = "registry.json"
_REGISTRY_VERSION = 1
_KNOWN_SUFFIXES = {".pkl", ".npz", ".npy", ".obj"}


class DemoHeadWarning(UserWarning):
    """No FLAME model is registered: flamekit runs on its built-in demo head (not FLAME)."""


def flamekit_home() -> Path:
    """``$FLAMEKIT_HOME`` or ``~/.flamekit``."""
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".flamekit").expanduser()


@dataclass
class RegistryEntry:
    """One registered file (``files[0]`` is the main file; RingNet embeddings have two)."""

    name: str
    kind: str
    release: str
    files: list[str]
    sha256: str
    size: int
    added: str
    origin: str
    details: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.files[0])


# ---------------------------------------------------------------- identifying files


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes inside an .npz, read from the member headers (no data loaded)."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(member)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(member)
            shapes[info.filename[:-4]] = tuple(int(s) for s in shape)
    return shapes


def _npz_text(path: Path, key: str) -> str | None:
    with np.load(path, allow_pickle=False) as npz:
        return str(npz[key].item()) if key in npz.files else None


def _texture_details(shapes: dict[str, tuple[int, ...]], path: Path) -> tuple[str, dict]:
    if "components" in shapes:  # flamekit's own format: (K,3,H,W)
        k, _, h, w = shapes["components"]
        return "flamekit texture space", {"components": k, "resolution": f"{h}x{w}"}
    if "tex_dir" in shapes:
        k = shapes["tex_dir"][-1]
        side = int(round((int(np.prod(shapes["mean"])) / 3) ** 0.5))
        return "FLAME texture space", {"components": k, "resolution": f"{side}x{side}"}
    k = shapes["PC"][-1]
    side = int(round((shapes["PC"][0] / 3) ** 0.5))
    return "FLAME albedo from BFM", {"components": k, "resolution": f"{side}x{side}"}


def identify_file(path: str | os.PathLike) -> tuple[str, str, dict]:
    """Say what a file is, from its content: (kind, release, details with counts).

    Raises:
        FlameFileError: not a file flamekit knows, with the reason.
    """
    from flamekit.model.landmarks import load_landmark_embedding, load_mediapipe_embedding
    from flamekit.model.loader import NPZ_FORMAT, load_flame

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".obj":
        from flamekit.model.uv import load_uv_layout

        layout = load_uv_layout(path)
        return (
            "uv-template",
            "template mesh with UVs",
            {"uvs": int(layout.uvs.shape[0]), "faces": int(layout.uv_faces.shape[0])},
        )
    if suffix == ".npz":
        try:
            shapes = _npz_shapes(path)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise FlameFileError(f"{path} is not a readable .npz file ({error})") from None
        keys = set(shapes)
        if "format" in keys and _npz_text(path, "format") == NPZ_FORMAT:
            suffix = ".pkl"  # handled by load_flame below
        elif keys >= {"mean", "tex_dir"} or keys >= {"MU", "PC"} or keys >= {"mean", "components"}:
            release, details = _texture_details(shapes, path)
            return "texture-space", release, details
        elif "landmark_indices" in keys and "v_template" not in keys:
            emb = load_mediapipe_embedding(path)
            return "mediapipe", "MediaPipe embedding", {"points": int(emb.faces.shape[0])}
        elif "static_lmk_faces_idx" in keys:
            emb = load_landmark_embedding(path)
            return "landmarks", "68-point embedding", _landmark_details(emb)
        else:
            raise FlameFileError(
                f"{path}: unknown .npz content (keys: {', '.join(sorted(keys))}). flamekit "
                "registers FLAME models, landmark embeddings, texture spaces and template OBJs."
            )
    if suffix == ".npy":
        emb = load_landmark_embedding(path)
        return "landmarks", "68-point embedding", _landmark_details(emb)
    if suffix == ".pkl":
        if path.name.lower() == "flame_static_embedding.pkl":
            emb = load_landmark_embedding(path)
            return "landmarks", "68-point embedding (RingNet)", _landmark_details(emb)
        data = load_flame(path)
        details = {
            "vertices": data.num_vertices,
            "faces": data.num_faces,
            "identity": data.num_identity,
            "expression": data.num_expression,
            "joints": data.num_joints,
        }
        return "flame", data.release, details
    raise FlameFileError(
        f"{path}: flamekit does not know '{suffix or path.name}' files "
        f"(it registers {', '.join(sorted(_KNOWN_SUFFIXES))})"
    )


def _landmark_details(emb) -> dict:
    return {"static": int(emb.static_faces.shape[0]), "yaw_bins": int(emb.dynamic_faces.shape[0])}


def _default_name(path: Path, kind: str) -> str:
    stem = path.stem.lower()
    if kind == "flame":
        release = guess_release(path)
        names = {
            "FLAME 2020 (generic)": "flame2020-generic",
            "FLAME 2020 (male)": "flame2020-male",
            "FLAME 2020 (female)": "flame2020-female",
            "FLAME 2023": "flame2023",
            "FLAME 2023 (no jaw)": "flame2023-no-jaw",
            "FLAME 2023 Open": "flame2023-open",
        }
        if release in names:
            return names[release]
    if kind == "landmarks" and stem == "flame_static_embedding":
        return "landmark-embedding-ringnet"
    return "".join(c if c.isalnum() else "-" for c in stem).strip("-") or kind


def _sha256(paths: list[Path]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


# ---------------------------------------------------------------- the registry


class Registry:
    """The registered files in one flamekit home (``registry.json`` plus copied files)."""

    def __init__(self, home: str | os.PathLike | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else flamekit_home()
        self.file = self.home / _REGISTRY_FILE
        self._entries: dict[str, RegistryEntry] = {}
        self._defaults: dict[str, str] = {}
        self._read()

    # -- persistence
    def _read(self) -> None:
        if not self.file.is_file():
            return
        try:
            state = json.loads(self.file.read_text(encoding="utf-8"))
            self._entries = {n: RegistryEntry(**e) for n, e in state["entries"].items()}
            self._defaults = dict(state.get("defaults", {}))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FlameFileError(
                f"{self.file} is damaged ({error}); move it away and register your files "
                "again with `flamekit models add PATH`"
            ) from None

    def _write(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        state = {
            "version": _REGISTRY_VERSION,
            "entries": {n: asdict(e) for n, e in sorted(self._entries.items())},
            "defaults": self._defaults,
        }
        text = json.dumps(state, indent=2).encode("utf-8")
        atomic_write(self.file, lambda handle: handle.write(text))

    # -- queries
    def entries(self, kind: str | None = None) -> list[RegistryEntry]:
        return [e for _, e in sorted(self._entries.items()) if kind is None or e.kind == kind]

    def default(self, kind: str) -> RegistryEntry | None:
        name = self._defaults.get(kind)
        return self._entries.get(name) if name else None

    def is_default(self, entry: RegistryEntry) -> bool:
        return self._defaults.get(entry.kind) == entry.name

    def get(self, name: str) -> RegistryEntry:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise FlameFileError(
                f"no registered file named '{name}' in {self.home} (registered: {known}). "
                "Register one with `flamekit models add PATH`."
            )
        return self._entries[name]

    def verify(self, entry: RegistryEntry) -> str:
        """'ok', 'missing' or 'modified': the files against the recorded SHA-256."""
        paths = [Path(f) for f in entry.files]
        if not all(p.is_file() for p in paths):
            return "missing"
        return "ok" if _sha256(paths)[0] == entry.sha256 else "modified"

    # -- changes
    def set_default(self, name: str) -> RegistryEntry:
        entry = self.get(name)
        self._defaults[entry.kind] = name
        self._write()
        return entry

    def remove(self, name: str, keep_files: bool = False) -> RegistryEntry:
        entry = self.get(name)
        del self._entries[name]
        if self._defaults.get(entry.kind) == name:
            others = self.entries(entry.kind)
            if others:
                self._defaults[entry.kind] = others[0].name
            else:
                del self._defaults[entry.kind]
        folder = self.home / "models" / name
        if not keep_files and folder.is_dir():
            shutil.rmtree(folder)
        self._write()
        return entry

    def add(
        self,
        path: str | os.PathLike,
        name: str | None = None,
        copy: bool = True,
        force: bool = False,
        make_default: bool = False,
    ) -> tuple[list[RegistryEntry], list[tuple[Path, str]]]:
        """Register a file, every known file in a folder, or the files in a FLAME zip.

        Returns:
            (added entries, skipped files with the reason).
        Raises:
            FlameFileError: ``path`` missing; a single file that flamekit cannot use;
                a name already taken (without ``force``).
        """
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise FlameFileError(f"{path} does not exist. {FLAME_DOWNLOAD_HINT}")
        if path.is_file() and zipfile.is_zipfile(path) and path.suffix.lower() == ".zip":
            with tempfile.TemporaryDirectory(dir=self._staging_dir()) as tmp:
                _extract_known(path, Path(tmp))
                added, skipped = self._add_folder(
                    Path(tmp), copy=True, force=force, make_default=make_default, origin=path
                )
            if not added:
                raise FlameFileError(
                    f"{path} holds no file flamekit can use ({_describe_skipped(skipped)})"
                )
            return added, skipped
        if path.is_dir():
            added, skipped = self._add_folder(path, copy, force, make_default, origin=None)
            if not added:
                raise FlameFileError(
                    f"{path} holds no file flamekit can use ({_describe_skipped(skipped)})"
                )
            return added, skipped
        entry = self._add_file(path, name, copy, force, make_default, origin=path)
        return [entry], []

    def _staging_dir(self) -> Path:
        folder = self.home / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _add_folder(self, folder, copy, force, make_default, origin):
        added, skipped = [], []
        candidates = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _KNOWN_SUFFIXES
        )
        for file in candidates:
            if file.name.lower() == "flame_dynamic_embedding.npy":
                continue  # registered together with flame_static_embedding.pkl
            try:
                entry = self._add_file(
                    file,
                    None,
                    copy,
                    force,
                    make_default,
                    origin=(origin / file.relative_to(folder)) if origin else file,
                )
            except FlameFileError as error:
                skipped.append((file if origin is None else Path(file.name), str(error)))
            else:
                added.append(entry)
        return added, skipped

    def _add_file(self, path, name, copy, force, make_default, origin) -> RegistryEntry:
        kind, release, details = identify_file(path)
        name = name or _default_name(path, kind)
        if name in self._entries and not force:
            raise FlameFileError(
                f"'{name}' is already registered (from {self._entries[name].origin}); "
                "use --name to pick another name or --force to replace it"
            )
        sources = [path]
        if kind == "landmarks" and path.name.lower() == "flame_static_embedding.pkl":
            sources.append(path.with_name("flame_dynamic_embedding.npy"))
        if copy:
            folder = self.home / "models" / name
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            files = []
            for source in sources:
                target = folder / source.name
                shutil.copy2(source, target)
                files.append(target)
        else:
            files = sources
        sha, size = _sha256(files)
        entry = RegistryEntry(
            name=name,
            kind=kind,
            release=release,
            files=[str(f) for f in files],
            sha256=sha,
            size=size,
            added=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            origin=str(origin),
            details=details,
        )
        self._entries[name] = entry
        if make_default or kind not in self._defaults:
            self._defaults[kind] = name
        self._write()
        return entry


def _describe_skipped(skipped: list[tuple[Path, str]]) -> str:
    if not skipped:
        return "no .pkl, .npz, .npy or .obj files"
    return "; ".join(f"{p.name}: {reason.split('. ')[0]}" for p, reason in skipped[:5])


def _extract_known(archive_path: Path, target: Path) -> None:
    """Extract only files with known suffixes, refusing paths that escape ``target``."""
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            member = PurePosixPath(info.filename)
            if info.is_dir() or member.suffix.lower() not in _KNOWN_SUFFIXES:
                continue
            if member.is_absolute() or ".." in member.parts or member.name.startswith("."):
                continue  # never write outside the staging folder
            if "__MACOSX" in member.parts:
                continue
            destination = target / Path(*member.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink)


# ---------------------------------------------------------------- resolving what to load


def resolve_file(spec: str | os.PathLike | None, kind: str, registry: Registry | None = None):
    """Find the file for ``kind``: explicit name or path, then the environment, then the
    registry default. Returns a list of paths, or None when nothing is configured.

    Raises:
        FlameFileError: a named entry that does not exist, or a registered file that is gone.
    """
    if spec is None:
        env = ENV_BY_KIND.get(kind)
        spec = os.environ.get(env) if env else None
    registry = registry or Registry()
    if spec is not None:
        spec_str = str(spec)
        candidate = Path(spec_str).expanduser()
        looks_like_path = candidate.suffix or os.sep in spec_str or candidate.exists()
        if spec_str in registry._entries and not candidate.exists():
            entry = registry.get(spec_str)
        elif looks_like_path:
            return [candidate]
        else:
            entry = registry.get(spec_str)
    else:
        entry = registry.default(kind)
        if entry is None:
            return None
    if entry.kind != kind:
        raise FlameFileError(f"'{entry.name}' is a {entry.kind}, not a {kind}")
    for file in entry.files:
        if not Path(file).is_file():
            raise FlameFileError(
                f"registered {entry.kind} '{entry.name}' points to {file}, which no longer "
                f"exists. Remove it (`flamekit models remove {entry.name}`) and register the "
                f"file again (`flamekit models add PATH`). {FLAME_DOWNLOAD_HINT}"
            )
    return [Path(f) for f in entry.files]


def load_head(
    model: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    num_identity: int | None = None,
    num_expression: int | None = None,
    registry: Registry | None = None,
    allow_demo: bool = True,
):
    """A ready :class:`~flamekit.model.FlameModel` with landmarks and, when known, UVs.

    ``model`` and ``landmarks`` are registry names or paths (see the module docstring for
    the precedence). Without any FLAME model, the built-in demo head is used and a
    :class:`DemoHeadWarning` is issued (unless ``allow_demo`` is False: then an error says
    where to get FLAME).
    """
    from flamekit.model.flame import FlameModel
    from flamekit.model.landmarks import load_landmark_embedding
    from flamekit.model.loader import load_flame, missing_file_error
    from flamekit.model.uv import load_uv_layout

    registry = registry or Registry()
    model_files = resolve_file(model, "flame", registry)
    if model_files is None:
        if not allow_demo:
            raise missing_file_error("(none registered)")
        from flamekit.assets.demo_head import demo_head

        warnings.warn(
            "no FLAME model is registered: using flamekit's built-in demo head, which is NOT "
            f"FLAME. {FLAME_DOWNLOAD_HINT}",
            DemoHeadWarning,
            stacklevel=2,
        )
        demo = demo_head()
        return FlameModel(demo.data, demo.landmarks, None, num_identity, num_expression)
    data = load_flame(model_files[0])
    landmark_files = resolve_file(landmarks, "landmarks", registry)
    if landmark_files is None:
        raise FlameFileError(
            f"{data.release} needs the 68-landmark embedding (landmark_embedding.npy from "
            "the DECA or photometric_optimization releases, or RingNet's "
            "flame_static_embedding.pkl + flame_dynamic_embedding.npy); register it with "
            "`flamekit models add PATH` or pass --landmarks PATH"
        )
    embedding = load_landmark_embedding(*landmark_files[:2])
    if data.uvs is None:
        for kind in ("uv-template", "texture-space"):
            entry = registry.default(kind)
            if entry is None or not entry.path.is_file():
                continue
            try:
                layout = load_uv_layout(entry.path, num_faces=data.num_faces)
            except FlameFileError:
                continue
            data.uvs, data.uv_faces = layout.uvs_numpy(), layout.uv_faces_numpy()
            break
    return FlameModel(data, embedding, None, num_identity, num_expression)
