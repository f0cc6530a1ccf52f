"""The fit configuration: defaults, partial files, dotted overrides, errors and round trips."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import yaml

from flamekit.fitting.config import (
    LANDMARK_SETS,
    PARAMETER_GROUPS,
    ConfigError,
    FitConfig,
    StageConfig,
    config_to_dict,
    default_config,
    format_config,
    load_config,
    validate_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _stage(cfg, name):
    return next(s for s in cfg.stages if s.name == name)


# ---------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------


def test_defaults_match_the_original_fitting_code():
    cfg = default_config()
    assert cfg == FitConfig()
    assert (cfg.optimizer, cfg.render_size, cfg.crop_size, cfg.crop_scale) == (
        "adam",
        224,
        256,
        1.25,
    )
    assert (cfg.model.num_identity, cfg.model.num_expression, cfg.model.num_texture) == (
        100,
        50,
        50,
    )
    assert cfg.camera.type == "orthographic" and cfg.lighting.mode == "per-channel"
    assert cfg.device is None and (cfg.detector, cfg.segmenter, cfg.renderer) == (
        "dlib",
        "skin",
        "flamekit",
    )
    assert [s.name for s in cfg.stages] == ["rigid", "full"]
    rigid, full = cfg.stages
    assert (rigid.iterations, rigid.lr, rigid.landmarks) == (200, 0.005, "static")
    assert set(rigid.optimize) == {"global_pose", "camera"}
    assert rigid.losses == {"landmark": 1.0}
    assert len(LANDMARK_SETS[rigid.landmarks]) == 51 and LANDMARK_SETS["static"][0] == 17
    assert (full.iterations, full.lr, full.landmarks) == (800, 0.005, "all")
    assert len(LANDMARK_SETS[full.landmarks]) == 68
    assert set(full.optimize) == set(PARAMETER_GROUPS)
    assert full.losses["landmark"] == 1.0 and full.losses["photometric"] == 8.0
    assert full.losses["identity-reg"] == 1e-4 and full.losses["expression-reg"] == 1e-4
    assert full.losses["pose-reg"] == 0.0 and full.losses["texture-reg"] == 1e-4
    for name in ("lighting-reg", "offset-magnitude", "offset-smoothness"):
        assert 0 < full.losses[name] < full.losses["photometric"]
    validate_config(cfg)


def test_default_config_is_a_fresh_copy():
    a = default_config()
    a.stages[1].losses["photometric"] = 1.0
    a.stages.append(dataclasses.replace(a.stages[0], name="extra"))
    b = default_config()
    assert b.stages[1].losses["photometric"] == 8.0 and len(b.stages) == 2


def test_every_field_is_documented():
    for cls in (FitConfig, StageConfig, type(default_config().camera)):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
            assert f"{f.name}: " in cls.__doc__


def test_load_config_without_arguments_gives_the_defaults():
    assert load_config() == default_config()


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def test_partial_yaml_merges_over_the_defaults(tmp_path):
    path = _write(
        tmp_path,
        "fit.yaml",
        """
model:
  num_identity: 50
camera:
  type: perspective
stages:
  full:
    iterations: 400
    losses:
      photometric: 4
      identity-reg: 1e-3   # PyYAML reads this as a string; it must still be a float
render_size: 128
""",
    )
    cfg = load_config(path)
    assert cfg.model.num_identity == 50 and cfg.model.num_expression == 50
    assert cfg.camera.type == "perspective" and cfg.camera.init_scale == 5.0
    full = _stage(cfg, "full")
    assert full.iterations == 400 and full.lr == 0.005
    assert full.losses["photometric"] == 4.0 and isinstance(full.losses["photometric"], float)
    assert full.losses["identity-reg"] == 1e-3
    assert full.losses["landmark"] == 1.0, "a losses mapping merges, other weights stay"
    assert _stage(cfg, "rigid") == default_config().stages[0]
    assert cfg.render_size == 128 and cfg.crop_size == 256


def test_partial_toml_merges_over_the_defaults(tmp_path):
    path = _write(
        tmp_path,
        "fit.toml",
        """
seed = 3
device = "cpu"

[lighting]
mode = "shared"

[texture]
skin_tone = [0.5, 0.4, 0.3]

[stages.rigid]
lr = 0.01

[stages.1.losses]
offset-smoothness = 2
""",
    )
    cfg = load_config(path)
    assert cfg.seed == 3 and cfg.device == "cpu"
    assert cfg.lighting.mode == "shared" and cfg.lighting.init_ambient == 3.0
    assert cfg.texture.skin_tone == (0.5, 0.4, 0.3) and cfg.texture.offset is True
    assert _stage(cfg, "rigid").lr == 0.01
    assert _stage(cfg, "full").losses["offset-smoothness"] == 2.0


def test_empty_yaml_file_gives_the_defaults(tmp_path):
    assert load_config(_write(tmp_path, "empty.yml", "# nothing\n")) == default_config()


def test_a_stage_list_in_a_file_replaces_the_schedule(tmp_path):
    path = _write(
        tmp_path,
        "schedule.yaml",
        """
stages:
  - name: align
    iterations: 100
    optimize: [global_pose, camera]
    losses: {landmark-robust: 1}
    landmarks: static
  - name: shape
    iterations: 300
    optimize: [identity, expression, jaw_pose]
    losses: {landmark: 1, identity-reg: 1e-4}
    lr: 0.01
    early_stop: true
  - name: colour
    iterations: 200
    optimize: [texture, lighting]
    losses: {photometric: 8}
""",
    )
    cfg = load_config(path, ["stages.shape.patience=10", "stages.2.iterations=50"])
    assert [s.name for s in cfg.stages] == ["align", "shape", "colour"]
    align, shape, colour = cfg.stages
    assert align.losses == {"landmark-robust": 1.0} and align.lr == 0.005
    assert shape.lr == 0.01 and shape.early_stop and shape.patience == 10
    assert shape.landmarks == "all" and shape.rel_tol == 1e-4
    assert colour.iterations == 50 and colour.optimize == ["texture", "lighting"]


# ---------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "read", "expected"),
    [
        ("model.num_identity=50", lambda c: c.model.num_identity, 50),
        ("stages.full.iterations=400", lambda c: _stage(c, "full").iterations, 400),
        ("stages.rigid.lr=0.01", lambda c: _stage(c, "rigid").lr, 0.01),
        ("stages.0.lr=0.02", lambda c: c.stages[0].lr, 0.02),
        ("stages.-1.iterations=10", lambda c: c.stages[-1].iterations, 10),
        ("stages.full.lr=1e-3", lambda c: _stage(c, "full").lr, 1e-3),
        ("crop_scale=2", lambda c: c.crop_scale, 2.0),
        ("camera.type=perspective", lambda c: c.camera.type, "perspective"),
        ("lighting.mode=shared", lambda c: c.lighting.mode, "shared"),
        ("camera.optimize_focal=true", lambda c: c.camera.optimize_focal, True),
        (
            "stages.full.losses.photometric=4",
            lambda c: _stage(c, "full").losses["photometric"],
            4.0,
        ),
        ("stages.full.losses.pose-reg=1e-3", lambda c: _stage(c, "full").losses["pose-reg"], 1e-3),
        (
            "stages.full.optimize=[identity,expression,camera]",
            lambda c: _stage(c, "full").optimize,
            ["identity", "expression", "camera"],
        ),
        ("texture.skin_tone=[0.6, 0.5, 0.4]", lambda c: c.texture.skin_tone, (0.6, 0.5, 0.4)),
        ("device=cuda:0", lambda c: c.device, "cuda:0"),
        ("device=null", lambda c: c.device, None),
        ("detector=2", lambda c: c.detector, "2"),
        ("stages.rigid={iterations: 7, early_stop: true}", lambda c: c.stages[0].iterations, 7),
    ],
)
def test_dotted_overrides(override, read, expected):
    cfg = load_config(overrides=[override])
    value = read(cfg)
    assert value == expected and type(value) is type(expected)


def test_overrides_add_a_loss_and_apply_in_order():
    cfg = load_config(
        overrides=[
            "stages.rigid.losses.landmark-robust=0.5",
            "stages.rigid.iterations=10",
            "stages.rigid.iterations=20",
        ]
    )
    assert cfg.stages[0].losses == {"landmark": 1.0, "landmark-robust": 0.5}
    assert cfg.stages[0].iterations == 20


def test_a_mapping_override_merges_and_a_list_override_replaces():
    cfg = load_config(overrides=["stages.rigid={early_stop: true}"])
    assert cfg.stages[0].early_stop and cfg.stages[0].iterations == 200
    cfg = load_config(
        overrides=[
            "stages=[{name: only, iterations: 5, optimize: [camera], losses: {landmark: 1}}]"
        ]
    )
    assert [s.name for s in cfg.stages] == ["only"]


def test_overrides_apply_after_the_file(tmp_path):
    path = _write(tmp_path, "fit.yaml", "stages: {full: {iterations: 400}}\nseed: 1\n")
    cfg = load_config(path, ["stages.full.iterations=300"])
    assert _stage(cfg, "full").iterations == 300 and cfg.seed == 1


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("modle.num_identity=5", "unknown key 'modle' (did you mean 'model'?)"),
        ("model.num_identiy=5", "unknown key 'model.num_identiy' (did you mean 'num_identity'?)"),
        ("stages.full.iteratons=5", "(did you mean 'iterations'?)"),
        ("stages.fulll.iterations=5", "unknown stage 'fulll' (did you mean 'full'?)"),
        ("stages.7.iterations=5", "stage index 7 is out of range"),
        ("stages.full.iterations=many", "stages.full.iterations: expected an integer"),
        ("model.num_identity=1.5", "model.num_identity: expected an integer"),
        ("model.num_identity=true", "model.num_identity: expected an integer"),
        ("camera.optimize_focal=1", "camera.optimize_focal: expected true or false"),
        (
            "stages.full.losses.photometric=high",
            "stages.full.losses.photometric: expected a number",
        ),
        ("stages.full.lr=.nan", "stages.full.lr: expected a finite number"),
        ("stages.full.optimize=identity", "stages.full.optimize: expected a list"),
        ("stages.full.losses=[photometric]", "stages.full.losses: expected a mapping"),
        ("texture.skin_tone=[0.5, 0.5]", "texture.skin_tone: expected a list of 3 values"),
        ("camera=orthographic", "camera: expected a mapping"),
        ("stages.full.iterations", "expected KEY=VALUE"),
        ("stages..lr=1", "expected KEY=VALUE"),
        ("stages.full.optimize=[a,", "not valid YAML"),
    ],
)
def test_override_errors_name_the_override_and_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)
    assert str(info.value).startswith(f"override {override!r}")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.full.iterations=-1", "stages.full.iterations: must be >= 0, got -1"),
        ("stages.full.lr=0", "stages.full.lr: must be > 0"),
        ("stages.full.optimize=[identiy]", "did you mean 'identity'?); allowed: identity"),
        ("stages.full.optimize=[camera, camera]", "lists camera more than once"),
        ("stages.full.optimize=[]", "must name at least one parameter group"),
        ("stages.full.losses.photometric=-1", "stages.full.losses.photometric: weights must be"),
        ("stages.rigid.losses.landmark=0", "needs at least one loss with a positive weight"),
        (
            "stages.full.landmarks=jaw",
            "stages.full.landmarks: unknown value 'jaw'; allowed: static",
        ),
        ("stages.full.patience=0", "stages.full.patience: must be >= 1"),
        ("stages.full.name=rigid", "stage 'rigid' is defined twice"),
        ("stages.full.name=a.b", "cannot be addressed by overrides"),
        ("stages.full.name=3", "cannot be addressed by overrides"),
        ("stages=[]", "stages: needs at least one stage"),
        ("camera.type=persp", "camera.type: unknown value 'persp' (did you mean 'perspective'?)"),
        ("camera.type=weak", "allowed: orthographic, perspective"),
        ("camera.focal_length=0", "camera.focal_length: must be > 0"),
        ("lighting.mode=rgb", "lighting.mode: unknown value 'rgb'; allowed: per-channel, shared"),
        ("lighting.init_ambient=0", "lighting.init_ambient: must be > 0"),
        ("render_size=16", "render_size: must be >= 32, got 16"),
        ("crop_size=31", "crop_size: must be >= 32"),
        ("optimizer=lbfgs", "optimizer: unknown value 'lbfgs'"),
        ("model.num_expression=-1", "model.num_expression: must be >= 0"),
        ("texture.skin_tone=[1.5, 0.5, 0.5]", "texture.skin_tone: RGB values must lie in 0..1"),
        ("log_every=0", "log_every: must be >= 1"),
        ("detector=''", "detector: must not be empty"),
    ],
)
def test_bad_values_are_rejected(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert message in str(info.value)


def test_file_errors_name_the_file(tmp_path):
    path = _write(tmp_path, "bad.yaml", "model:\n  num_identiy: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'model\.num_identiy'"):
        load_config(path)
    path = _write(tmp_path, "bad.toml", "[stages.fulll]\niterations = 5\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: .*did you mean 'full'"):
        load_config(path)
    path = _write(tmp_path, "types.yaml", "seed: [1]\n")
    with pytest.raises(ConfigError, match="seed: expected an integer, got"):
        load_config(path)
    path = _write(tmp_path, "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="config: expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config(_write(tmp_path, "broken.toml", "seed = \n"))
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_config(_write(tmp_path, "broken.yaml", "seed: [1\n"))
    with pytest.raises(ConfigError, match="unknown format '.json'"):
        load_config(_write(tmp_path, "fit.json", "{}"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_a_stage_in_a_list_needs_its_required_keys(tmp_path):
    path = _write(
        tmp_path, "fit.yaml", "stages:\n  - {name: a, iterations: 5, optimize: [camera]}\n"
    )
    with pytest.raises(ConfigError, match="stages.a: missing required key 'losses'"):
        load_config(path)


def test_validate_config_checks_configs_built_in_code():
    cfg = default_config()
    cfg.stages[0].optimize.append("shoulders")
    with pytest.raises(ConfigError, match="stages.rigid.optimize: unknown value 'shoulders'"):
        validate_config(cfg)
    cfg = default_config()
    cfg.render_size = "224"  # type: ignore[assignment]
    validate_config(cfg)  # numeric text is accepted, as PyYAML reads 1e-4 as text
    cfg.render_size = [224]  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="render_size: expected an integer"):
        validate_config(cfg)


def test_a_single_string_is_not_taken_for_a_list_of_overrides():
    with pytest.raises(TypeError, match="sequence of KEY=VALUE strings"):
        load_config(overrides="seed=1")


# ---------------------------------------------------------------------------------------
# Printing and round trips
# ---------------------------------------------------------------------------------------


def _custom_config():
    return load_config(
        overrides=[
            "camera.type=perspective",
            "camera.optimize_focal=true",
            "lighting.mode=shared",
            "device=cuda:1",
            "detector=yes",  # a name YAML would read as a boolean when unquoted
            "texture.skin_tone=[0.7, 0.55, 0.45]",
            "stages.full.losses.my-plugin loss=0.25",
            "stages.full.losses.identity-reg=1e-5",
            "stages.rigid.early_stop=true",
            "stages.rigid.rel_tol=1e-6",
        ]
    )


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
@pytest.mark.parametrize("make", [default_config, _custom_config])
@pytest.mark.parametrize("comments", [True, False])
def test_printed_config_loads_back_equal(tmp_path, fmt, make, comments):
    cfg = make()
    text = format_config(cfg, fmt, comments=comments)
    path = _write(tmp_path, f"printed.{fmt}", text)
    assert load_config(path) == cfg
    parsed = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    expected = config_to_dict(cfg)
    if cfg.device is None and fmt == "toml":
        del expected["device"]  # TOML has no null: an unset device is left out
    assert parsed == expected


def test_printed_config_comments_every_key():
    text = format_config(default_config())
    assert text.startswith("# flamekit fit configuration")
    assert "# Learning rate." in text and "stages.full.iterations=400" in text
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert all(len(line) <= 100 for line in comments), "comments are wrapped"
    assert "#" not in format_config(default_config(), comments=False)


def test_custom_stage_list_round_trips_through_toml(tmp_path):
    cfg = default_config()
    cfg.stages = [
        StageConfig("a", 3, ["camera"], {"landmark": 1.0}),
        StageConfig("b", 4, ["identity", "lighting"], {"photometric": 2.0, "x": 0.0}, lr=0.1),
    ]
    validate_config(cfg)
    path = _write(tmp_path, "fit.toml", format_config(cfg, "toml"))
    assert load_config(path) == cfg


def test_unknown_format_is_rejected():
    with pytest.raises(ConfigError, match="allowed: yaml, toml"):
        format_config(default_config(), "json")


def test_config_to_dict_is_plain():
    data = config_to_dict(default_config())
    assert isinstance(data["texture"]["skin_tone"], list)
    assert data["stages"][0]["name"] == "rigid" and list(data)[0] == "model"
    assert yaml.safe_load(yaml.safe_dump(data)) == data
