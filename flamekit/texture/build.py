"""Build a texture (albedo) space from photos: fit, unwrap, complete, PCA.

Stages, each keeping one file per image under ``work_dir`` so that an interrupted or
extended run resumes where it stopped and never redoes finished work (fits are the
expensive part):

a. ``fits/<stem>.npz``: the photo fitted with the initial space and the texture offset on;
   keeps what unwrapping needs (render-size photo, skin mask, posed vertices, camera,
   shading) so the fit is never repeated.
b. ``unwrap/<stem>.npz``: the UV albedo of the photo (photo / fitted shading where the texel
   is visible; this is the fit's space albedo + offset as far as the photo shows it) and
   the visibility map.
c. ``complete/<stem>.npz``: the unseen texels filled by an inpainter (the seam-aware
   harmonic fill by default), so every image gives a full map.
d. PCA over the completed maps, written with :func:`save_texture_space` plus a
   ``FLAME_texture.npz``-layout export beside it.

A delete of one stage file redoes that stage (and the later ones, which depend on it) for
that image only. Every file is written atomically; a failing image is recorded and skipped.

Fit and unwrap, the per-image work, run batch by batch in this process or as Ray tasks
(``executor="ray"``, :mod:`flamekit.texture.executors`); the tasks write the same files, so
the executors can be mixed across resumed runs. Completion and PCA always run here. After
PCA the space's quality (:func:`_quality`) goes into the report and the provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flamekit.batch import Failure, expand_images
from flamekit.io.atomic import atomic_write

__all__ = [
    "BUILD_OVERRIDES",
    "STAGES",
    "BuildReport",
    "StageFailure",
    "build_config",
    "build_space",
]

STAGES = ("fit", "unwrap", "complete", "pca")
_SETTINGS = "settings.json"
# Settings a work folder's files depend on: reusing a folder with others would mix maps.
_PINNED = ("texture_size", "render_size", "model", "init_space")


@dataclass
class StageFailure(Failure):
    """A skipped image, the stage it failed in, and why."""

    stage: str = ""


@dataclass
class BuildReport:
    """What :func:`build_space` did: per stage, images done now / reused / failed, seconds."""

    out: Path
    work_dir: Path
    flame_export: Path | None = None
    images: int = 0
    done: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    reused: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    failures: list[Failure] = field(default_factory=list)
    num_components: int = 0
    used_images: list[str] = field(default_factory=list)
    interrupted: bool = False
    quality: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted and self.num_components > 0

    def format(self) -> str:
        lines = [
            f"texture space {self.out}: {self.num_components} component(s) from "
            f"{len(self.used_images)} of {self.images} image(s) (work folder {self.work_dir})"
        ]
        for stage in STAGES:
            lines.append(
                f"  {stage:<8} done {self.done[stage]:>4}, reused {self.reused[stage]:>4}, "
                f"{self.seconds[stage]:.1f} s"
            )
        if self.quality is not None:
            from flamekit.texture.quality import format_quality

            lines.append(f"quality ({self.quality['method']}):")
            lines += ["  " + line for line in format_quality(self.quality).splitlines()]
        if self.interrupted:
            lines.append("interrupted: finished files are kept; run again to resume")
        if self.failures:
            lines.append(f"{len(self.failures)} image(s) failed:")
            for f in self.failures:
                stage = getattr(f, "stage", "")
                lines.append(f"  {f.image}: {f'[{stage}] ' if stage else ''}{f.reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _save_npz(path: Path, **arrays) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _readable(path: Path, keys: Iterable[str]) -> bool:
    """True when ``path`` holds every key: a file from an older or broken run is redone."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            return set(keys) <= set(npz.files)
    except Exception:  # noqa: BLE001 - any unreadable file is simply redone
        return False


_FIT_KEYS = ("image", "skin_mask", "vertices", "shading", "camera_type")
_UNWRAP_KEYS = ("albedo_uv", "visible_uv")
_COMPLETE_KEYS = ("albedo_uv",)


# --------------------------------------------------------------------------------------------
# Cameras to and from arrays
# --------------------------------------------------------------------------------------------


def _camera_arrays(camera, index: int) -> dict[str, np.ndarray]:
    def get(t) -> np.ndarray:
        return t[index].detach().cpu().numpy().astype(np.float32)

    if hasattr(camera, "to_camera"):
        return {
            "camera_type": np.array("perspective"),
            "camera_focal": get(camera.focal),
            "camera_principal_point": get(camera.principal_point),
            "camera_rotation": get(camera.rotation),
            "camera_translation": get(camera.translation),
            "camera_image_size": np.array(camera.image_size, dtype=np.int64),
        }
    return {
        "camera_type": np.array("orthographic"),
        "camera_scale": get(camera.scale.reshape(-1, 1)),
        "camera_translation": get(camera.translation),
        "camera_depth_range": np.array(float(camera.depth_range), dtype=np.float32),
    }


def _camera_from(records: list[dict[str, np.ndarray]], device):
    from flamekit.render import OrthographicCamera, PerspectiveCamera

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([r[key] for r in records])).to(device)

    kinds = {str(r["camera_type"]) for r in records}
    if len(kinds) != 1:
        raise ValueError(f"mixed camera types in one batch: {sorted(kinds)}")
    if kinds == {"perspective"}:
        return PerspectiveCamera(
            focal=stack("camera_focal"),
            principal_point=stack("camera_principal_point"),
            rotation=stack("camera_rotation"),
            translation=stack("camera_translation"),
            image_size=tuple(int(v) for v in records[0]["camera_image_size"]),
        )
    return OrthographicCamera(
        scale=stack("camera_scale"),
        translation=stack("camera_translation"),
        depth_range=float(records[0]["camera_depth_range"]),
    )


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _init_space(init_space, resolution: int):
    """A TextureSpace from an object, a path or a registered name."""
    from flamekit.model.registry import resolve_file
    from flamekit.model.texture_space import TextureSpace, load_texture_space

    if isinstance(init_space, TextureSpace):
        return init_space
    files = resolve_file(init_space, "texture-space")
    if files is None:
        raise ValueError("no initial texture space: give a path or a registered name")
    return load_texture_space(files[0], num_components=None, resolution=resolution)


def _head(model, space):
    from flamekit.model.registry import load_head

    head = model if isinstance(model, torch.nn.Module) else load_head(model)
    if head.uvs is None:
        if space.uvs is None:
            raise ValueError(
                "neither the model nor the initial texture space has a UV layout; "
                "a texture space needs one"
            )
        head.set_uv_layout(space.uvs, space.uv_faces)
    if space.uv_faces is not None and space.uv_faces.shape != head.uv_faces.shape:
        raise ValueError(
            f"the initial texture space's UV layout has {space.uv_faces.shape[0]} faces, the "
            f"model {head.uv_faces.shape[0]}: they belong to different meshes"
        )
    return head


def _check_settings(work_dir: Path, settings: dict) -> None:
    path = work_dir / _SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in _PINNED if k in old and old[k] != settings[k]]
        if changed:
            details = ", ".join(f"{k}: {old[k]!r} -> {settings[k]!r}" for k in changed)
            raise ValueError(
                f"{work_dir} holds files built with other settings ({details}); use another "
                "work folder or delete this one"
            )
    text = json.dumps(settings, indent=2, default=str)
    atomic_write(path, lambda handle: handle.write(text.encode()))


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


class _StageBar:
    """A rich progress bar for one stage (images done of the stage's to-do list)."""

    def __init__(self, enabled: bool, stage: str, total: int) -> None:
        self.bar = None
        if enabled and total:
            from flamekit.batch import progress_bar

            self.bar = progress_bar()
            self.task = self.bar.add_task(stage, total=total)

    def __enter__(self) -> _StageBar:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def advance(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, count)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


#: Fit-config overrides build-space applies under the user's own: photos for a space are
#: exposed alike, so brightness differences between them go to the albedo (the
#: ``exposure-prior`` loss), not to the light, whose brightness photometry cannot separate.
BUILD_OVERRIDES = ("stages.full.losses.exposure-prior=1.0",)


def build_config(overrides: Iterable[str] = ()):
    """The fit config build-space uses: the fit defaults, :data:`BUILD_OVERRIDES`, then
    ``overrides`` (dotted ``key=value`` strings, as ``flamekit build-space -s``)."""
    from flamekit.fitting.config import load_config

    return load_config(None, [*BUILD_OVERRIDES, *overrides])


def build_space(
    images: Iterable[str | Path],
    init_space,
    out: str | Path,
    work_dir: str | Path | None = None,
    num_components: int = 50,
    config=None,
    model=None,
    landmarks: str | Path | None = None,
    masks: str | Path | None = None,
    inpainter: str = "harmonic",
    texture_size: int = 256,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    inpainter_steps: int = 500,
    quality: bool = True,
) -> BuildReport:
    """Build a texture space from photos (files, folders or globs); see the module docstring.

    Args:
        init_space: the space fits start from: a :class:`TextureSpace`, a path or a
            registered name. Its UV layout is the new space's.
        out: the new space (flamekit format); ``<stem>_FLAME_texture.npz`` goes beside it.
        work_dir: per-image intermediate files (default ``<out>.work``); reuse it to resume.
        num_components: K kept (at most images - 1).
        config: a FitConfig (default :func:`build_config`); the texture offset is always on.
        model: a FlameModel, a registered name or a path (default: the registry / demo head).
        landmarks, masks: files or folders used instead of a detector / segmenter.
        inpainter: the inpainter plugin that fills unseen texels.
        texture_size: T of the new space's maps.
        batch_size: images fitted / unwrapped together.
        device: torch device (default: the config's, else cuda when available).
        executor: ``"local"`` (this process) or ``"ray"``: the fit and unwrap stages run as
            one Ray task per batch (GPU tasks when ``device`` is cuda), each writing the same
            per-image files as a local run; completion and PCA stay in this process.
        ray_address: a Ray cluster to join (default: start a local instance of
            ``ray_num_cpus`` CPUs; a Ray already initialised in this process is reused).
        inpainter_steps: with ``inpainter="gmcnn"`` and no trained weights, the GMCNN is
            first trained on the unwrapped maps for this many steps (``<work>/gmcnn.pt``,
            resumed by later runs).
        quality: measure the space (see :func:`_quality`) into the report and provenance.
    """
    from flamekit.fitting.config import config_to_dict
    from flamekit.fitting.pipeline import resolve_device
    from flamekit.texture.executors import make_executor

    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # fail before any work is done
            from flamekit.texture.executors import RAY_HINT

            raise ImportError(RAY_HINT)
    if num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    if texture_size < 8:
        raise ValueError(f"texture_size must be >= 8, got {texture_size}")
    config = config or build_config()
    if not config.texture.offset:  # the offset carries what the initial space cannot
        config = dataclasses.replace(
            config, texture=dataclasses.replace(config.texture, offset=True)
        )
    dev = resolve_device(str(device) if device is not None else config.device)
    out = Path(out)
    work_dir = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    report = BuildReport(out=out, work_dir=work_dir)

    paths, failures = expand_images(images)
    report.failures.extend(failures)
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            report.failures.append(
                StageFailure(path, f"same name as {stems[path.stem]}; rename one", "fit")
            )
        else:
            stems[path.stem] = path
    report.images = len(paths)

    space = _init_space(init_space, max(texture_size, 64))
    head = _head(model, space)
    settings = {
        "texture_size": int(texture_size),
        "render_size": int(config.render_size),
        "model": getattr(head, "data_release", str(model)),
        "init_space": space.source or "memory",
        "inpainter": inpainter,
        "config": config_to_dict(config),
    }
    work_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(work_dir, settings)
    dirs = {s: work_dir / s for s in ("fits", "unwrap", "complete")}
    failed: set[str] = set()

    def fail(stem: str, stage: str, reason: str) -> None:
        failed.add(stem)
        report.failures.append(StageFailure(stems[stem], reason, stage))

    runner = make_executor(executor, ray_address, ray_num_cpus, use_gpu=dev.type == "cuda")
    try:
        _fit_stage(
            stems,
            dirs,
            config,
            space,
            head,
            landmarks,
            masks,
            batch_size,
            dev,
            report,
            fail,
            failed,
            progress,
            runner,
        )
        _unwrap_stage(
            stems,
            dirs,
            head,
            config,
            texture_size,
            batch_size,
            dev,
            report,
            fail,
            failed,
            progress,
            runner,
        )
    except KeyboardInterrupt:
        report.interrupted = True
        return report
    finally:
        runner.close()
    try:
        _complete_stage(
            stems, dirs, head, inpainter, report, fail, failed, progress, inpainter_steps, dev
        )
    except KeyboardInterrupt:
        report.interrupted = True
        return report

    began = time.perf_counter()
    done = [s for s in stems if s not in failed and (dirs["complete"] / f"{s}.npz").is_file()]
    if len(done) < 2:
        report.failures.append(
            Failure(work_dir, f"a texture space needs at least 2 completed images, got {len(done)}")
        )
        return report
    provenance = {
        "builder": "flamekit.texture.build_space",
        "num_images": len(done),
        "images": [str(stems[s]) for s in done],
        "failures": [
            {"image": str(f.image), "stage": getattr(f, "stage", ""), "reason": f.reason}
            for f in report.failures
        ],
        "init_space": space.source or "memory",
        "model": settings["model"],
        "inpainter": inpainter,
        "texture_size": int(texture_size),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": settings["config"],
    }
    maps = [_load_npz(dirs["complete"] / f"{s}.npz")["albedo_uv"] for s in done]
    stacked = torch.from_numpy(np.stack(maps))
    built = _pca(stacked, num_components, head, provenance)
    if quality:
        report.quality = _quality(built, stacked, num_components, head)
        built.provenance["quality"] = report.quality  # the space keeps a copy of its own
    _save(built, out, report)
    report.used_images = done
    report.num_components = built.num_components
    report.done["pca"] = 1
    report.seconds["pca"] = time.perf_counter() - began
    _say(progress, f"pca: {built.num_components} component(s) from {len(done)} image(s)")
    return report


QUALITY_HELD_OUT = 0.2
QUALITY_SEED = 0


def _quality(built, maps: torch.Tensor, k: int, head) -> dict:
    """Quality of the built space, honest about what was held out.

    The space itself is built from every completed map. Generalization and specificity
    need maps a space has not seen, so they are measured on a second space with the same K
    built (same PCA) from a seeded 80% of the maps: generalization on the other 20%,
    specificity against the 80%. Compactness is the built space's own (model) variance.
    With fewer than 3 maps there is nothing to hold out: compactness only.
    """
    from flamekit.texture.quality import evaluate_space

    n = maps.shape[0]
    if n < 3:
        whole = evaluate_space(built)
        return {**whole, "method": "compactness of the built space; too few maps to hold out"}
    order = torch.randperm(n, generator=torch.Generator().manual_seed(QUALITY_SEED))
    n_held = min(n - 1, max(1, round(QUALITY_HELD_OUT * n)))  # evaluate_space's own split
    train = order[n_held:]
    check = _pca(maps[train], k, head, {})
    report = evaluate_space(check, maps, held_out_fraction=QUALITY_HELD_OUT, seed=QUALITY_SEED)
    ks = [kk for kk in report["k_values"] if kk <= built.num_components]
    whole = evaluate_space(built, k_values=ks)
    report.update(
        num_components=whole["num_components"],
        k_values=ks,
        compactness=whole["compactness"],
        holdout_space_components=check.num_components,
        method=(
            f"compactness: the built space; generalization/specificity: a space of the same "
            f"K from {int(train.numel())} of the {n} maps, generalization on the other "
            f"{n_held} (seed {QUALITY_SEED})"
        ),
    )
    return report


def _save(space, out: Path, report: BuildReport) -> None:
    from flamekit.model.texture_space import export_flame_texture_npz, save_texture_space

    save_texture_space(space, out)
    report.flame_export = export_flame_texture_npz(
        space, out.with_name(f"{out.stem}_FLAME_texture.npz")
    )


def _pca(maps: torch.Tensor, k: int, head, provenance: dict, exact_limit: int = 4096):
    """Mean and top-K principal directions of [N,3,T,T] maps.

    Components are unit vectors and ``std`` the coefficients' standard deviations
    (singular values / sqrt(N-1)), so albedo = mean + sum_k c_k comp_k with c_k ~ N(0, std_k^2),
    the convention of FLAME's own texture space and of the fitter's regularizer. Up to a few
    thousand maps: exact, through the N x N Gram matrix (accumulated in float64 over column
    blocks, so memory stays at the maps themselves); beyond: randomized (``pca_lowrank``).
    """
    from flamekit.model.texture_space import TextureSpace

    n = maps.shape[0]
    shape = maps.shape[1:]
    flat = maps.reshape(n, -1).to(torch.float32)
    mean = flat.to(torch.float64).mean(0)
    centred = flat - mean.to(torch.float32)
    keep = max(1, min(k, n - 1))
    provenance["requested_components"] = int(k)
    block = 1 << 16
    if n <= exact_limit:
        gram = torch.zeros(n, n, dtype=torch.float64)
        for j in range(0, centred.shape[1], block):
            part = centred[:, j : j + block].to(torch.float64)
            gram += part @ part.T
        eigenvalues, u = torch.linalg.eigh(gram)  # ascending
        eigenvalues, u = eigenvalues.flip(0)[:keep], u.flip(1)[:, :keep]
        s = eigenvalues.clamp_min(0).sqrt()
        vt = torch.empty(keep, centred.shape[1], dtype=torch.float64)
        for j in range(0, centred.shape[1], block):
            vt[:, j : j + block] = u.T @ centred[:, j : j + block].to(torch.float64)
        vt = vt / s.clamp_min(1e-12)[:, None]
    else:
        _, s, v = torch.pca_lowrank(centred, q=min(keep + 10, n), center=False, niter=4)
        s, vt = s[:keep].to(torch.float64), v[:, :keep].T.to(torch.float64)
    # Directions without variance (exactly repeated maps) are noise, not components.
    real = s > 1e-6 * s[:1].clamp_min(1e-30)
    s, vt = s[real], vt[real]
    # A deterministic sign: the largest entry of each component is positive.
    signs = torch.sign(vt.gather(1, vt.abs().argmax(1, keepdim=True)))
    vt = vt * torch.where(signs == 0, torch.ones_like(signs), signs)
    std = s / max(1.0, (n - 1) ** 0.5)
    return TextureSpace(
        mean.reshape(shape).float(),
        vt.reshape(vt.shape[0], *shape).float(),
        std.float(),
        uvs=head.uvs.detach().cpu(),
        uv_faces=head.uv_faces.detach().cpu(),
        provenance=provenance,
    )


def _pending(
    stems, folder: Path, keys, report: BuildReport, stage: str, failed, source: Path | None = None
) -> list[str]:
    """Images whose ``stage`` file is missing, unreadable, or older than its input file
    (a redone earlier stage makes the later ones stale)."""
    todo = []
    for stem in stems:
        if stem in failed:
            continue
        target = folder / f"{stem}.npz"
        stale = False
        if source is not None and target.is_file():
            before = source / f"{stem}.npz"
            stale = before.is_file() and before.stat().st_mtime_ns > target.stat().st_mtime_ns
        if not stale and _readable(target, keys):
            report.reused[stage] += 1
        else:
            todo.append(stem)
    return todo


class _FitContext:
    """What every fit batch shares; the detector, segmenter and fitter are made once per
    process (not pickled), so local batches reuse them and a Ray task makes its own."""

    def __init__(self, fits_dir, config, space, head, landmarks, masks, device) -> None:
        self.fits_dir, self.config, self.space, self.head = fits_dir, config, space, head
        self.landmarks, self.masks, self.device = landmarks, masks, str(device)
        self._tools = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tools": None}

    def tools(self):
        from flamekit.fitting.fitter import Fitter
        from flamekit.fitting.pipeline import detector_for, segmenter_for

        if self._tools is None:
            self._tools = (
                detector_for(self.config, self.landmarks),
                segmenter_for(self.config, self.masks),
                Fitter(self.head, self.config, texture_space=self.space, device=self.device),
            )
        return self._tools


def _fit_batch(batch: list[tuple[str, str]], ctx: _FitContext) -> dict:
    """Fit one batch of (stem, photo) and write each fit file; returns done and failures.

    Runs in the driver (local executor) or in a Ray task: everything it produces is the
    files it writes, so both executors leave the same work folder."""
    from flamekit.fitting.pipeline import prepare_image
    from flamekit.plugin_types import ImageError, PluginUnavailableError

    detector, segmenter, fitter = ctx.tools()
    failures: list[tuple[str, str]] = []
    prepared = []
    for stem, path in batch:
        try:
            prepared.append(prepare_image(Path(path), ctx.config, detector, segmenter))
        except (ImageError, PluginUnavailableError, ValueError, OSError) as error:
            failures.append((stem, str(error)))
    if not prepared:
        return {"done": 0, "failures": failures}
    try:
        result = fitter.fit(
            torch.stack([p.render_image for p in prepared]),
            torch.stack([p.render_landmarks for p in prepared]),
            torch.stack([p.render_mask for p in prepared]),
        )
    except (RuntimeError, ValueError) as error:  # e.g. out of memory: skip the batch
        failures += [(p.path.stem, f"the batch fit failed: {error}") for p in prepared]
        return {"done": 0, "failures": failures}
    camera = result.parameters.camera()
    params = result.parameters.as_numpy()
    done = 0
    for i, item in enumerate(prepared):
        loss = float(result.losses[i])
        if not np.isfinite(loss):
            failures.append((item.path.stem, "the fit diverged (non-finite loss)"))
            continue
        _save_npz(
            ctx.fits_dir / f"{item.path.stem}.npz",
            image=item.render_image.numpy().astype(np.float32),
            skin_mask=item.render_mask.numpy().astype(np.float32),
            vertices=result.vertices[i].detach().cpu().numpy().astype(np.float32),
            shading=result.shading[i].detach().cpu().numpy().astype(np.float32),
            loss=np.array(loss, dtype=np.float32),
            source=np.array(str(item.path)),
            **_camera_arrays(camera, i),
            **{f"param_{k}": v[i] for k, v in params.items()},
        )
        done += 1
    return {"done": done, "failures": failures}


def _run_batches(stage, fn, todo, batch_size, ctx, executor, report, fail, progress) -> None:
    """Split ``todo`` into batches (the same split for every executor, so batched fits see
    the same companions), run them, and gather the counts and failures."""
    step = max(1, batch_size)
    batches = [todo[start : start + step] for start in range(0, len(todo), step)]

    bar = _StageBar(progress, stage, len(todo))

    def gather(result) -> None:
        if isinstance(result, Exception):  # a Ray task that died: its whole batch fails
            return
        for stem, reason in result["failures"]:
            fail(stem, stage, reason)
        report.done[stage] += result["done"]
        bar.advance(result["done"] + len(result["failures"]))

    with bar:
        results = executor.map(fn, batches, ctx, on_result=gather)
    _say(progress, f"{stage}: {report.done[stage]}/{len(todo)} image(s)")
    for batch, result in zip(batches, results, strict=True):
        if isinstance(result, Exception):
            for item in batch:
                fail(item[0] if isinstance(item, tuple) else item, stage, str(result))


def _run_stage(stage, fn, todo, batch_size, ctx, executor, report, fail, progress, began):
    """Run a stage's pending items in batches, when there are any (on ``executor``, default
    local), and record the stage's time since ``began``."""
    from flamekit.texture.executors import LocalExecutor

    if todo:
        executor = executor or LocalExecutor()
        _run_batches(stage, fn, todo, batch_size, ctx, executor, report, fail, progress)
    report.seconds[stage] = time.perf_counter() - began


def _fit_stage(
    stems,
    dirs,
    config,
    space,
    head,
    landmarks,
    masks,
    batch_size,
    device,
    report,
    fail,
    failed,
    progress,
    executor=None,
) -> None:
    """Stage a: fit the photos that have no fit file yet."""
    began = time.perf_counter()
    todo = _pending(stems, dirs["fits"], _FIT_KEYS, report, "fit", failed)
    ctx = _FitContext(dirs["fits"], config, space, head, landmarks, masks, device)
    items = [(stem, str(stems[stem])) for stem in todo]
    _run_stage("fit", _fit_batch, items, batch_size, ctx, executor, report, fail, progress, began)


class _UnwrapContext:
    """What every unwrap batch shares; device copies of the mesh are made once per process."""

    def __init__(self, dirs, head, config, size, device) -> None:
        self.dirs, self.head, self.config, self.size = dirs, head, config, size
        self.device = str(device)
        self._tools = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tools": None}

    def tools(self):
        from flamekit.render.backends import get_backend

        if self._tools is None:
            dev, head = self.device, self.head
            self._tools = (
                get_backend(self.config.renderer),
                head.faces.to(dev),
                head.uvs.to(dev),
                head.uv_faces.to(dev),
            )
        return self._tools


def _unwrap_batch(chunk_stems: list[str], ctx: _UnwrapContext) -> dict:
    """Unwrap one batch of fitted images into UV albedo + visibility files."""
    from flamekit.texture.unwrap import unwrap

    backend, faces, uvs, uv_faces = ctx.tools()
    device = ctx.device
    failures: list[tuple[str, str]] = []
    chunk, records = [], []
    for stem in chunk_stems:
        try:
            records.append(_load_npz(ctx.dirs["fits"] / f"{stem}.npz"))
            chunk.append(stem)
        except Exception as error:  # noqa: BLE001 - a broken fit file fails its image
            failures.append((stem, f"cannot read its fit file: {error}"))
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(records):  # one batch per camera type and render size
        groups.setdefault((str(rec["camera_type"]), rec["image"].shape), []).append(i)
    done = 0
    for index in groups.values():
        recs = [records[i] for i in index]

        def stack(key: str, recs=recs) -> torch.Tensor:
            return torch.from_numpy(np.stack([r[key] for r in recs])).to(device)

        camera = _camera_from(recs, device)
        vertices = stack("vertices")
        r = recs[0]["image"].shape[-1]
        rast = backend.rasterize(camera.to_clip(vertices).contiguous(), faces, (r, r))
        albedo, visible = unwrap(
            stack("image"),
            vertices,
            camera,
            faces,
            uvs,
            uv_faces,
            stack("shading"),
            stack("skin_mask"),
            rast,
            ctx.size,
            backend=backend,
        )
        for j, i in enumerate(index):
            stem = chunk[i]
            if visible[j].sum() == 0:
                failures.append((stem, "no texel of the head is visible on skin"))
                continue
            _save_npz(
                ctx.dirs["unwrap"] / f"{stem}.npz",
                albedo_uv=albedo[j].cpu().numpy().astype(np.float32),
                visible_uv=visible[j].cpu().numpy().astype(np.uint8),
            )
            done += 1
    return {"done": done, "failures": failures}


def _unwrap_stage(
    stems,
    dirs,
    head,
    config,
    size,
    batch_size,
    device,
    report,
    fail,
    failed,
    progress,
    executor=None,
) -> None:
    """Stage b: UV albedo and visibility from every fit without an unwrap file."""
    began = time.perf_counter()
    todo = _pending(
        stems, dirs["unwrap"], _UNWRAP_KEYS, report, "unwrap", failed, source=dirs["fits"]
    )
    ctx = _UnwrapContext(dirs, head, config, size, device)
    _run_stage(
        "unwrap", _unwrap_batch, todo, batch_size, ctx, executor, report, fail, progress, began
    )


GMCNN_CHECKPOINT = "gmcnn.pt"


def _make_inpainter(name: str, head, **options):
    from flamekit import plugins

    layout = {
        "uvs": head.uvs.detach().cpu().numpy(),
        "uv_faces": head.uv_faces.detach().cpu().numpy(),
        "faces": head.faces.detach().cpu().numpy(),
    }
    try:
        return plugins.inpainter(name, **layout, **options)
    except TypeError:  # an inpainter that knows nothing of UV layouts
        return plugins.inpainter(name, **options)


def _gmcnn_weights(stems, dirs, steps, device, failed, progress) -> tuple[Path | None, bool]:
    """Weights for ``--inpainter gmcnn``: the installed ones, else a GMCNN trained here.

    Without installed weights (``$FLAMEKIT_HOME/weights``) the network is trained, self-
    supervised, on this build's own unwrapped maps and their visibility masks, into
    ``<work>/gmcnn.pt``; a later run resumes it (or, with more steps, trains it further).
    Returns the weights (None: the installed default) and whether any step ran now, in
    which case maps completed with the older network are redone."""
    from flamekit.inpaint_training import train_inpainter
    from flamekit_plugins.inpainters.gmcnn import default_weights_path

    if default_weights_path().is_file():
        return None, False
    checkpoint = dirs["fits"].parent / GMCNN_CHECKPOINT
    maps, valid = [], []
    for stem in stems:
        path = dirs["unwrap"] / f"{stem}.npz"
        if stem in failed or not _readable(path, _UNWRAP_KEYS):
            continue
        rec = _load_npz(path)
        maps.append(rec["albedo_uv"])
        valid.append(rec["visible_uv"])
    if not maps:
        return checkpoint, False
    _say(progress, f"complete: training the GMCNN inpainter on {len(maps)} map(s) ({steps} steps)")
    result = train_inpainter(
        torch.from_numpy(np.stack(maps)).float().clamp(0, 1),
        torch.from_numpy(np.stack(valid)).bool(),
        checkpoint,
        steps,
        device=device,
        progress=progress,
    )
    return checkpoint, result.steps_run > 0


def _complete_stage(
    stems, dirs, head, name, report, fail, failed, progress, inpainter_steps=500, device="cpu"
) -> None:
    """Stage c: fill the unseen texels of every unwrapped map without a completed file."""
    began = time.perf_counter()
    options: dict = {}
    retrained = False
    if name == "gmcnn":
        weights, retrained = _gmcnn_weights(stems, dirs, inpainter_steps, device, failed, progress)
        if weights is not None:
            options = {"weights": weights, "device": str(device)}
    if retrained:  # every map is completed again by the newly trained network
        todo = [stem for stem in stems if stem not in failed]
    else:
        todo = _pending(
            stems,
            dirs["complete"],
            _COMPLETE_KEYS,
            report,
            "complete",
            failed,
            source=dirs["unwrap"],
        )
    if todo:
        inpainter = _make_inpainter(name, head, **options)
        with _StageBar(progress, "complete", len(todo)) as bar:
            for stem in todo:
                bar.advance()
                try:
                    rec = _load_npz(dirs["unwrap"] / f"{stem}.npz")
                except Exception as error:  # noqa: BLE001
                    fail(stem, "complete", f"cannot read its unwrap file: {error}")
                    continue
                image = torch.from_numpy(rec["albedo_uv"])[None].float()
                known = torch.from_numpy(rec["visible_uv"])[None].bool()
                filled = inpainter.inpaint(image, known)[0].clamp(0, 1)
                _save_npz(
                    dirs["complete"] / f"{stem}.npz",
                    albedo_uv=filled.numpy().astype(np.float32),
                )
                report.done["complete"] += 1
        _say(progress, f"complete: {report.done['complete']}/{len(todo)} image(s)")
    report.seconds["complete"] = time.perf_counter() - began
