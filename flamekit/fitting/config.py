"""Every number of the photometric fit, in typed dataclasses with the original code's defaults.

A fit is described by :class:`FitConfig`; :func:`load_config` reads a YAML or TOML file that
gives only the keys it changes and then applies command-line overrides such as
``stages.full.iterations=400``. ``flamekit fit --print-config`` prints the effective
configuration with :func:`format_config`, one comment per key, in a form that loads back.

Merge rules (files and overrides alike): mappings merge key by key, lists and scalars replace.
``stages`` is a list: given as a list it replaces the whole schedule (each entry then needs
``name``, ``iterations``, ``optimize`` and ``losses``); given as a mapping it edits existing
stages by name or index (``stages: {full: {iterations: 400}}``).

The defaults follow the FLAME photometric-fitting code (Adam, lr 0.005, 224 px renders of a
256 px crop; a ``rigid`` stage fitting pose and camera to the 51 static landmarks for 200
steps, then a ``full`` stage fitting everything to all 68 landmarks and the photo for 800).
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

__all__ = [
    "CAMERA_TYPES",
    "FORMATS",
    "LANDMARK_SETS",
    "LIGHTING_MODES",
    "MIN_IMAGE_SIZE",
    "OPTIMIZERS",
    "PARAMETER_GROUPS",
    "CameraConfig",
    "ConfigError",
    "FitConfig",
    "LightingConfig",
    "ModelConfig",
    "StageConfig",
    "TextureConfig",
    "config_to_dict",
    "default_config",
    "format_config",
    "load_config",
    "validate_config",
]

#: Parameter groups a stage may optimize. Groups a fit does not have (``texture`` with
#: ``model.num_texture = 0``, ``texture_offset`` with ``texture.offset = false``) are skipped.
PARAMETER_GROUPS = (
    "identity",
    "expression",
    "global_pose",
    "neck_pose",
    "jaw_pose",
    "eye_pose",
    "camera",
    "texture",
    "lighting",
    "texture_offset",
)
CAMERA_TYPES = ("orthographic", "perspective")
LIGHTING_MODES = ("per-channel", "shared")
#: Optimizers the fitter implements (torch.optim.Adam); extend together with the fitter.
OPTIMIZERS = ("adam",)
FORMATS = ("yaml", "toml")
#: iBUG-68 landmark indices per ``StageConfig.landmarks``: ``static`` leaves out the jaw line
#: (0..16), whose points slide along the face contour as the head turns.
LANDMARK_SETS: dict[str, tuple[int, ...]] = {
    "static": tuple(range(17, 68)),
    "all": tuple(range(68)),
}
#: Smallest render and crop size: below it the 68 landmarks fall on a handful of pixels.
MIN_IMAGE_SIZE = 32


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""


def _field(doc: str, default: Any = MISSING, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field whose one-line ``doc`` feeds the docstring and ``--print-config``."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


def _documented(cls: type) -> type:
    """Append an ``Attributes`` section built from the field docs, so they live in one place."""
    lines = []
    for f in fields(cls):
        if f.default is not MISSING:
            default = f" Default: ``{f.default!r}``."
        elif f.default_factory is not MISSING and not is_dataclass(f.default_factory):
            default = " Default: see :func:`default_config`."
        else:
            default = ""
        lines.append(f"        {f.name}: {f.metadata['doc']}{default}")
    if cls.__doc__ is not None:  # None under python -OO
        cls.__doc__ = cls.__doc__.rstrip() + "\n\n    Attributes:\n" + "\n".join(lines) + "\n"
    return cls


@_documented
@dataclass
class ModelConfig:
    """How many FLAME and texture-space components the fit may use."""

    num_identity: int = _field("Identity (shape) components fitted (FLAME has up to 300).", 100)
    num_expression: int = _field("Expression components fitted (FLAME has up to 100).", 50)
    num_texture: int = _field(
        "Texture-space components used; 0 = no texture space (constant skin_tone albedo).", 50
    )


@_documented
@dataclass
class CameraConfig:
    """The camera model and where it starts."""

    type: str = _field(
        "'orthographic' (scale and 2D shift, as the original code) or 'perspective'.",
        "orthographic",
    )
    init_scale: float = _field(
        "Orthographic: NDC units per metre at the start (a ~0.2 m head spans ~1 NDC unit).", 5.0
    )
    focal_length: float = _field(
        "Perspective: focal length in half image widths (fx = focal_length * W / 2).", 5.0
    )
    init_distance: float = _field("Perspective: camera distance in metres at the start.", 1.0)
    optimize_focal: bool = _field(
        "Perspective: the 'camera' group also optimizes the focal length.", False
    )


@_documented
@dataclass
class LightingConfig:
    """Second-order spherical-harmonics lighting (DECA's coefficient layout)."""

    mode: str = _field(
        "'per-channel' ([B,9,3]: photos carry white-balance casts and coloured light) or "
        "'shared' ([B,9,1]: grey light, more constrained, for neutral studio photos).",
        "per-channel",
    )
    init_ambient: float = _field(
        "DC coefficient at the start; its shading is 0.282 * value (DECA's DC constant "
        "1/sqrt(4 pi)), so 3.0 shades ~0.85 and the first render is neither black nor "
        "blown out.",
        3.0,
    )


@_documented
@dataclass
class TextureConfig:
    """The albedo: texture space, per-image detail offset and the written texture."""

    offset: bool = _field(
        "Fit a per-image UV offset map on top of the texture space (detail it cannot express).",
        True,
    )
    offset_resolution: int = _field(
        "Resolution of the optimized offset map; upsampled to the texture, so it stays smooth.",
        128,
    )
    output_size: int = _field("Size of the written texture.png (--texture-size).", 512)
    skin_tone: tuple[float, float, float] = _field(
        "Constant RGB albedo in 0..1 when no texture space is given.", (0.75, 0.58, 0.48)
    )


@_documented
@dataclass
class StageConfig:
    """One optimization stage: which parameter groups move, under which weighted losses."""

    name: str = _field("Stage name, used by overrides such as stages.full.iterations=400.")
    iterations: int = _field("Optimizer steps (0 skips the stage).")
    optimize: list[str] = _field("Parameter groups optimized: " + ", ".join(PARAMETER_GROUPS) + ".")
    losses: dict[str, float] = _field(
        "Loss plugin name -> weight (landmark, landmark-robust, photometric, identity-reg, "
        "expression-reg, pose-reg, texture-reg, lighting-reg, exposure-prior, offset-magnitude, "
        "offset-smoothness, or a third-party loss); weight 0 switches a loss off."
    )
    lr: float = _field("Learning rate.", 0.005)
    landmarks: str = _field(
        "Landmarks fitted: 'static' (51 points, iBUG 17..67, no jaw line) or 'all' (68).", "all"
    )
    early_stop: bool = _field("Stop before 'iterations' once the loss has converged.", False)
    rel_tol: float = _field(
        "Early stop: converged when the loss changed by less than this fraction over "
        "'patience' steps.",
        1e-4,
    )
    patience: int = _field("Early stop: steps over which the relative change is measured.", 25)


def _rigid_stage() -> StageConfig:
    # The jaw-line landmarks slide with the head pose, so the rigid alignment leaves them out.
    return StageConfig(
        name="rigid",
        iterations=200,
        optimize=["global_pose", "camera"],
        losses={"landmark": 1.0},
        landmarks="static",
    )


def _full_stage() -> StageConfig:
    return StageConfig(
        name="full",
        iterations=800,
        optimize=list(PARAMETER_GROUPS),
        losses={
            "landmark": 1.0,
            "photometric": 8.0,
            "identity-reg": 1e-4,
            "expression-reg": 1e-4,
            # 0 as in the original code; listed so that one override switches it on.
            "pose-reg": 0.0,
            "texture-reg": 1e-4,
            # A tie-breaker between albedo and light colour; larger values keep real
            # coloured light from being fitted.
            "lighting-reg": 1e-3,
            # 0 for single photos (their exposure is unknown); build-space switches it on so
            # that brightness differences between photos go to the albedo, not to the light.
            "exposure-prior": 0.0,
            # Small against photometric 8: where a texel is seen, the L1 photometric gradient
            # outweighs both until the offset is several colour units, so the offset follows
            # the photo. They decide the unseen texels: the magnitude term pulls them back to
            # the texture-space colour and the smoothness term blends seen into unseen over a
            # few texels, so no seam shows at the visibility boundary.
            "offset-magnitude": 0.1,
            "offset-smoothness": 1.0,
        },
        landmarks="all",
    )


def _default_stages() -> list[StageConfig]:
    return [_rigid_stage(), _full_stage()]


@_documented
@dataclass
class FitConfig:
    """Everything a fit needs besides the photos and the model files."""

    model: ModelConfig = _field("FLAME and texture-space components.", factory=ModelConfig)
    camera: CameraConfig = _field("Camera model.", factory=CameraConfig)
    lighting: LightingConfig = _field("Spherical-harmonics lighting.", factory=LightingConfig)
    texture: TextureConfig = _field("Albedo and texture output.", factory=TextureConfig)
    stages: list[StageConfig] = _field(
        "Optimization stages, run in order (default: rigid, then full).", factory=_default_stages
    )
    render_size: int = _field("Size of the square renders compared with the photo.", 224)
    crop_size: int = _field("Size of the square face crop taken from the photo.", 256)
    crop_scale: float = _field("Enlargement of the detected face box before cropping.", 1.25)
    optimizer: str = _field("Optimizer, one of: " + ", ".join(OPTIMIZERS) + ".", "adam")
    seed: int = _field("Random seed, so a fit is repeatable.", 0)
    log_every: int = _field(
        "Loss values are read back (a GPU sync) and logged only every N steps.", 50
    )
    device: str | None = _field(
        "Torch device such as 'cpu' or 'cuda:0'; unset = cuda when available, else cpu.", None
    )
    detector: str = _field("Landmark detector plugin.", "dlib")
    segmenter: str = _field("Skin segmenter plugin (the photometric loss's mask).", "skin")
    renderer: str = _field("Renderer backend plugin.", "flamekit")


def default_config() -> FitConfig:
    """The defaults of the original photometric-fitting code (a fresh, mutable copy)."""
    return FitConfig()


# ---------------------------------------------------------------------------------------
# Dict form
# ---------------------------------------------------------------------------------------


def _to_plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def config_to_dict(cfg: FitConfig) -> dict[str, Any]:
    """Plain dicts, lists and scalars (tuples become lists), in field order; YAML/TOML-ready."""
    return _to_plain(cfg)


# ---------------------------------------------------------------------------------------
# Types, merging and coercion
# ---------------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _suggest(word: object, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(
    what: str, word: object, choices: Sequence[str], where: str, path: str = ""
) -> ConfigError:
    """The error for a key or stage that does not exist, with the closest match suggested."""
    return ConfigError(
        f"unknown {what} {_join(path, word)!r}{_suggest(word, choices)}; {where}: "
        f"{', '.join(choices)}"
    )


def _is_stage_list(tp: Any) -> bool:
    return get_origin(tp) is list and is_dataclass(get_args(tp)[0])


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


@dataclass(frozen=True)
class _Override:
    """An override's value before its field type is known: the raw text and its YAML value."""

    text: str
    value: Any


def _resolve_override(value: Any, tp: Any) -> Any:
    """Names such as ``device=cuda:0`` or ``detector=2d`` stay text even if YAML reads a number."""
    if not isinstance(value, _Override):
        return value
    args = get_args(tp) if _is_union(tp) else (tp,)
    if str in args and value.value is not None and not isinstance(value.value, str):
        return value.text.strip()
    return value.value


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _stage_index(stages: list[Any], key: object, path: str) -> int:
    """Resolve a stage given by name (or, failing that, by index) to its list index."""
    names = [s.get("name") if isinstance(s, Mapping) else None for s in stages]
    if key in names:
        return names.index(key)
    index: int | None = None
    if isinstance(key, int) and not isinstance(key, bool):
        index = key
    elif isinstance(key, str) and re.fullmatch(r"-?\d+", key):
        index = int(key)
    if index is not None:
        if -len(stages) <= index < len(stages):
            return index % len(stages)
        raise ConfigError(
            f"{path}: stage index {index} is out of range; there are {len(stages)} stages "
            f"({', '.join(map(str, names))})"
        )
    known = [n for n in names if isinstance(n, str)]
    if not known:
        raise ConfigError(f"{path}: there is no stage {key!r}; the stage list is empty")
    raise _unknown("stage", key, known, f"the stages (or an index 0..{len(stages) - 1}) are")


def _merge(base: Any, update: Any, tp: Any, path: str) -> Any:
    """Merge ``update`` over ``base`` (dict form): mappings merge, lists and scalars replace.

    Unknown keys are reported here, where the dataclass that owns them is known.
    """
    update = _resolve_override(update, tp)
    if is_dataclass(tp):
        if not isinstance(update, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got {_describe(update)}")
        hints = _hints(tp)
        result = dict(base) if isinstance(base, Mapping) else {}
        for key, value in update.items():
            if key not in hints:
                where = f"allowed keys under {path!r}" if path else "allowed top-level keys"
                raise _unknown("key", key, list(hints), where, path)
            result[key] = _merge(result.get(key), value, hints[key], _join(path, key))
        return result
    if _is_stage_list(tp):
        stage_tp = get_args(tp)[0]
        if isinstance(update, Mapping) and isinstance(base, list):
            stages = list(base)
            for key, value in update.items():
                i = _stage_index(stages, key, path)
                name = stages[i].get("name", i) if isinstance(stages[i], Mapping) else i
                stages[i] = _merge(stages[i], value, stage_tp, _join(path, name))
            return stages
        if isinstance(update, list | tuple):
            return [_merge(None, item, stage_tp, f"{path}[{i}]") for i, item in enumerate(update)]
        raise ConfigError(
            f"{path}: expected a list of stages or a mapping from stage name to changes, got "
            f"{_describe(update)}"
        )
    if get_origin(tp) is dict and isinstance(update, Mapping):
        result = dict(base) if isinstance(base, Mapping) else {}
        value_tp = get_args(tp)[1]
        for key, value in update.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be strings, got {_describe(key)}")
            result[key] = _coerce(_resolve_override(value, value_tp), value_tp, _join(path, key))
        return result
    # Leaves are checked here, so that a type error names the file or override it came from.
    return _coerce(update, tp, path)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the field type ``tp``; ints widen to floats, numeric text parses.

    Numeric text is accepted because PyYAML reads ``1e-4`` (no dot) as a string.
    """
    if is_dataclass(tp):
        return _build(tp, value, path)
    if _is_union(tp):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path)
    origin = get_origin(tp)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        (item_tp,) = get_args(tp)
        if is_dataclass(item_tp):
            return [_coerce(v, item_tp, _stage_path(path, i, v)) for i, v in enumerate(value)]
        return [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        item_tps = get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(item_tps):
            raise ConfigError(
                f"{path}: expected a list of {len(item_tps)} values, got {_describe(value)}"
            )
        return tuple(
            _coerce(v, t, f"{path}[{i}]")
            for i, (v, t) in enumerate(zip(value, item_tps, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        key_tp, value_tp = get_args(tp)
        result = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{path}: keys must be strings, got {_describe(k)}")
            result[k] = _coerce(v, value_tp, _join(path, k))
        return result
    return _coerce_scalar(value, tp, path)


def _coerce_scalar(value: Any, tp: Any, path: str) -> Any:
    def wrong() -> ConfigError:
        return ConfigError(f"{path}: expected {_TYPE_NAMES[tp]}, got {_describe(value)}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise wrong()
    if tp is str:
        if isinstance(value, str):
            return value
        raise wrong()
    if isinstance(value, bool):
        raise wrong()
    if isinstance(value, str):
        try:
            value = int(value) if tp is int else float(value)
        except ValueError:
            raise wrong() from None
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        raise wrong()
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    raise wrong()


def _stage_path(path: str, index: int, value: Any) -> str:
    name = value.get("name") if isinstance(value, Mapping) else None
    return _join(path, name) if isinstance(name, str) and name else f"{path}[{index}]"


def _build(cls: type, data: Any, path: str) -> Any:
    """Construct dataclass ``cls`` from its dict form, type-checking every field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {_describe(data)}")
    hints = _hints(cls)
    unknown = [k for k in data if k not in hints]
    if unknown:
        where = f"allowed keys under {path!r}" if path else "allowed top-level keys"
        raise _unknown("key", unknown[0], list(hints), where, path)
    kwargs = {}
    for f in fields(cls):
        key = _join(path, f.name)
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{path or 'config'}: missing required key {f.name!r}")
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_choice(value: str, key: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{key}: unknown value {value!r}{_suggest(value, choices)}; allowed: "
            f"{', '.join(choices)}"
        )


def _check_name(value: str, key: str) -> None:
    _check(bool(value.strip()), key, "must not be empty")


def _validate_stage(stage: StageConfig, key: str) -> None:
    _check(stage.iterations >= 0, f"{key}.iterations", f"must be >= 0, got {stage.iterations}")
    _check(stage.lr > 0, f"{key}.lr", f"must be > 0, got {stage.lr}")
    _check(bool(stage.optimize), f"{key}.optimize", "must name at least one parameter group")
    for group in stage.optimize:
        _check_choice(group, f"{key}.optimize", PARAMETER_GROUPS)
    duplicates = sorted({g for g in stage.optimize if stage.optimize.count(g) > 1})
    _check(not duplicates, f"{key}.optimize", f"lists {', '.join(duplicates)} more than once")
    for name, weight in stage.losses.items():
        _check(bool(name.strip()), f"{key}.losses", "loss names must not be empty")
        _check(weight >= 0, f"{key}.losses.{name}", f"weights must be >= 0, got {weight}")
    _check(
        any(w > 0 for w in stage.losses.values()),
        f"{key}.losses",
        "needs at least one loss with a positive weight",
    )
    _check_choice(stage.landmarks, f"{key}.landmarks", tuple(LANDMARK_SETS))
    _check(stage.rel_tol > 0, f"{key}.rel_tol", f"must be > 0, got {stage.rel_tol}")
    _check(stage.patience >= 1, f"{key}.patience", f"must be >= 1, got {stage.patience}")


def validate_config(cfg: FitConfig) -> None:
    """Raise :class:`ConfigError` unless every value has the right type and an allowed value.

    :func:`load_config` calls it; call it on a config built or edited in code. Loss names are
    checked against the plugin registry by the fitter, not here.
    """
    cfg = _build(FitConfig, config_to_dict(cfg), "")  # type check; ints widen to floats
    model = cfg.model
    for name in ("num_identity", "num_expression", "num_texture"):
        value = getattr(model, name)
        _check(value >= 0, f"model.{name}", f"must be >= 0, got {value}")

    camera = cfg.camera
    _check_choice(camera.type, "camera.type", CAMERA_TYPES)
    for name in ("init_scale", "focal_length", "init_distance"):
        value = getattr(camera, name)
        _check(value > 0, f"camera.{name}", f"must be > 0, got {value}")

    _check_choice(cfg.lighting.mode, "lighting.mode", LIGHTING_MODES)
    ambient = cfg.lighting.init_ambient
    _check(ambient > 0, "lighting.init_ambient", f"must be > 0, got {ambient}")

    texture = cfg.texture
    for name in ("offset_resolution", "output_size"):
        value = getattr(texture, name)
        _check(value >= 8, f"texture.{name}", f"must be >= 8, got {value}")
    _check(
        all(0 <= c <= 1 for c in texture.skin_tone),
        "texture.skin_tone",
        f"RGB values must lie in 0..1, got {list(texture.skin_tone)}",
    )

    _check(bool(cfg.stages), "stages", "needs at least one stage")
    seen: set[str] = set()
    for i, stage in enumerate(cfg.stages):
        key = f"stages[{i}]"
        _check_name(stage.name, f"{key}.name")
        _check(
            re.fullmatch(r"[^.=\s]+", stage.name) is not None
            and re.fullmatch(r"-?\d+", stage.name) is None,
            f"{key}.name",
            f"{stage.name!r} cannot be addressed by overrides (stages.NAME.KEY=VALUE): use no "
            "'.', '=' or spaces, and not a number",
        )
        _check(stage.name not in seen, f"{key}.name", f"stage {stage.name!r} is defined twice")
        seen.add(stage.name)
        _validate_stage(stage, f"stages.{stage.name}")

    for name in ("render_size", "crop_size"):
        value = getattr(cfg, name)
        _check(value >= MIN_IMAGE_SIZE, name, f"must be >= {MIN_IMAGE_SIZE}, got {value}")
    _check(cfg.crop_scale > 0, "crop_scale", f"must be > 0, got {cfg.crop_scale}")
    _check_choice(cfg.optimizer, "optimizer", OPTIMIZERS)
    _check(cfg.seed >= 0, "seed", f"must be >= 0, got {cfg.seed}")
    _check(cfg.log_every >= 1, "log_every", f"must be >= 1, got {cfg.log_every}")
    if cfg.device is not None:
        _check_name(cfg.device, "device")
    for name in ("detector", "segmenter", "renderer"):
        _check_name(getattr(cfg, name), name)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _read_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(
            f"config file {str(path)!r}: unknown format {suffix or '(no suffix)'!r}; use .yaml, "
            ".yml or .toml"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {suffix[1:]}: {exc}") from None
    return {} if data is None else data


def _parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` as the nested mapping ``{a: {b: {c: value}}}`` for :func:`_merge`."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(parts):
        raise ConfigError(
            f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. "
            "stages.full.iterations=400"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {exc}") from None
    nested: Any = _Override(raw, value)
    for part in reversed(parts):
        nested = {part: nested}
    return nested


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> FitConfig:
    """The defaults, merged with the YAML/TOML file ``path`` (if any), then ``overrides``.

    Args:
        path: ``.yaml``/``.yml`` or ``.toml`` file giving only the keys it changes.
        overrides: ``KEY=VALUE`` strings with dotted keys, applied in order:
            ``model.num_identity=50``, ``camera.type=perspective``,
            ``stages.full.losses.photometric=4``,
            ``stages.0.lr=0.01`` (a stage by name or index),
            ``stages.full.optimize=[identity,expression,camera]``. Values are read as YAML
            scalars, lists or mappings, then checked against the field type.

    Raises:
        ConfigError: an unreadable file, an unknown key (with a suggestion), a wrong type or a
            value out of range; the message names the file or override and the key.
    """
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of KEY=VALUE strings, not one string")
    data = config_to_dict(default_config())
    if path is not None:
        path = Path(path)
        try:
            data = _merge(data, _read_file(path), FitConfig, "")
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(
                message if message.startswith("config file") else f"{path}: {message}"
            ) from None
    for text in overrides:
        try:
            data = _merge(data, _parse_override(text), FitConfig, "")
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(
                message if message.startswith("override") else f"override {text!r}: {message}"
            ) from None
    cfg = _build(FitConfig, data, "")
    validate_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

_HEADER = (
    "flamekit fit configuration (flamekit fit --config FILE). Every key is optional: a file "
    "gives only what it changes."
)
_COMMENT_WIDTH = 100
_STAGES_NOTE = (
    "A list replaces the whole schedule; a mapping {NAME: {KEY: VALUE}} edits stages by name."
)


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return "\n".join(line for line in text.splitlines() if line != "...")


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {_describe(value)} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
    )


def _field_docs(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in fields(cls)}


def _field_type(cls: type | None, key: str) -> Any:
    return _hints(cls).get(key) if cls is not None else None


class _Writer:
    """Writes the dict form as YAML or TOML: plain keys before tables (TOML needs that order),
    one ``#`` comment per dataclass field when ``comments`` is set."""

    def __init__(self, fmt: str, comments: bool) -> None:
        self.fmt = fmt
        self.comments = comments
        self.lines: list[str] = []

    def comment(self, text: str, indent: str = "") -> None:
        if self.comments and text:
            width = max(40, _COMMENT_WIDTH - len(indent) - 2)
            self.lines.extend(f"{indent}# {line}" for line in textwrap.wrap(text, width))

    def write(self, data: Mapping[str, Any], cls: type | None, indent: str, table: str) -> None:
        docs = _field_docs(cls) if cls is not None else {}
        plain = [(k, v) for k, v in data.items() if not _is_table(v)]
        tables = [(k, v) for k, v in data.items() if _is_table(v)]
        for key, value in plain:
            self.comment(docs.get(key, ""), indent)
            if self.fmt == "yaml":
                self.lines.append(f"{indent}{_yaml_scalar(key)}: {_yaml_scalar(value)}")
            elif value is None:
                self.comment(f"{key} is not set", indent)
            else:
                self.lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in tables:
            tp = _field_type(cls, key)
            sub_cls = tp if is_dataclass(tp) else None
            if self.fmt == "toml":
                self.lines.append("")
            self.comment(docs.get(key, ""), indent)
            full = f"{table}.{_toml_key(key)}" if table else _toml_key(key)
            if isinstance(value, Mapping):
                if self.fmt == "yaml":
                    self.lines.append(f"{indent}{_yaml_scalar(key)}:")
                    self.write(value, sub_cls, indent + "  ", full)
                else:
                    self.lines.append(f"[{full}]")
                    self.write(value, sub_cls, indent, full)
            else:
                item_cls = get_args(tp)[0] if tp is not None and _is_stage_list(tp) else None
                self.write_list(key, value, item_cls, indent, full)

    def write_list(
        self, key: str, items: list[Mapping[str, Any]], cls: type | None, indent: str, full: str
    ) -> None:
        if cls is StageConfig:
            self.comment(_STAGES_NOTE, indent)
        if self.fmt == "yaml":
            self.lines.append(f"{indent}{_yaml_scalar(key)}:")
        for i, item in enumerate(items):
            # Field comments once, on the first item: they are the same for every item.
            comments, self.comments = self.comments, self.comments and i == 0
            if self.fmt == "yaml":
                start = len(self.lines)
                self.write(item, cls, indent + "    ", full)
                # The item's first key line (after its comment) opens the "- " entry.
                for j in range(start, len(self.lines)):
                    if not self.lines[j].lstrip().startswith("#"):
                        self.lines[j] = f"{indent}  - " + self.lines[j][len(indent) + 4 :]
                        break
            else:
                if i:
                    self.lines.append("")
                self.lines.append(f"[[{full}]]")
                self.write(item, cls, indent, full)
            self.comments = comments


def format_config(cfg: FitConfig, fmt: str = "yaml", comments: bool = True) -> str:
    """``cfg`` as YAML or TOML text that :func:`load_config` reads back to an equal config.

    Args:
        fmt: ``"yaml"`` or ``"toml"``.
        comments: put each key's description above it (what ``--print-config`` shows).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format: unknown value {fmt!r}; allowed: {', '.join(FORMATS)}")
    writer = _Writer(fmt, comments)
    writer.comment(_HEADER)
    writer.write(config_to_dict(cfg), FitConfig, "", "")
    return "\n".join(writer.lines).lstrip("\n") + "\n"
