"""The model registry and `flamekit models add/list/show/remove/default/convert`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flamekit.model import FlameFileError, load_flame
from flamekit.model.registry import (
    DemoHeadWarning,
    Registry,
    identify_file,
    load_head,
    resolve_file,
)
from flamekit_cli.main import app
from tests.flame_fixtures import synthetic_flame_dict, write_pickle

runner = CliRunner()


def _landmark_npz(path: Path) -> Path:
    rng = np.random.default_rng(3)
    bary = rng.random((79, 17, 3))
    bary /= bary.sum(-1, keepdims=True)
    np.savez(
        path,
        static_lmk_faces_idx=rng.integers(0, 9976, 51),
        static_lmk_bary_coords=np.full((51, 3), 1 / 3),
        dynamic_lmk_faces_idx=rng.integers(0, 9976, (79, 17)),
        dynamic_lmk_bary_coords=bary,
    )
    return path


def _texture_npz(path: Path) -> Path:
    rng = np.random.default_rng(4)
    np.savez(
        path,
        mean=rng.random((8, 8, 3)) * 255,
        tex_dir=rng.random((8, 8, 3, 4)),
        vt=rng.random((12, 2)),
        ft=rng.integers(0, 12, (9976, 3)),
    )
    return path


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    """Files as users download them: a FLAME zip, an embedding, a texture space."""
    root = tmp_path_factory.mktemp("downloads")
    model = write_pickle(root / "flame2023.pkl", synthetic_flame_dict())
    archive = root / "FLAME2023.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(model, "FLAME2023/flame2023.pkl")
        zf.writestr("FLAME2023/Readme.pdf", b"%PDF-1.4 not a model")
        zf.writestr("../escape.pkl", b"never extracted outside")
        zf.writestr("__MACOSX/FLAME2023/._flame2023.pkl", b"resource fork")
    return {
        "zip": archive,
        "model": model,
        "landmarks": _landmark_npz(root / "landmark_embedding.npz"),
        "texture": _texture_npz(root / "FLAME_texture.npz"),
    }


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "flamekit-home"
    monkeypatch.setenv("FLAMEKIT_HOME", str(home))
    for variable in ("FLAMEKIT_MODEL", "FLAMEKIT_LANDMARKS", "FLAMEKIT_TEXTURE_SPACE"):
        monkeypatch.delenv(variable, raising=False)
    return home


def _run(*args: str):
    return runner.invoke(app, ["models", *args])


def test_add_list_show_remove_through_the_cli(home, downloads):
    result = _run("list")
    assert result.exit_code == 0 and "no files registered" in result.output

    result = _run("add", str(downloads["zip"]))
    assert result.exit_code == 0, result.output
    assert "added flame2023: flame, FLAME 2023 (default)" in result.output
    assert not (home.parent / "escape.pkl").exists()
    assert not list((home / "tmp").iterdir())  # the staging folder is cleaned up

    result = _run("add", str(downloads["landmarks"]))
    assert "added landmark-embedding: landmarks" in result.output
    result = _run("add", str(downloads["texture"]))
    assert "added flame-texture: texture-space, FLAME texture space" in result.output

    result = _run("list")
    assert result.exit_code == 0
    lines = {line.split()[1]: line for line in result.output.splitlines()}
    assert set(lines) == {"flame2023", "landmark-embedding", "flame-texture"}
    assert lines["flame2023"].startswith("*")

    result = _run("show", "flame2023")
    assert result.exit_code == 0, result.output
    copied = home / "models" / "flame2023" / "flame2023.pkl"
    import hashlib

    digest = hashlib.sha256(copied.read_bytes()).hexdigest()
    assert f"sha256:   {digest} (ok)" in result.output
    assert "release:  FLAME 2023" in result.output
    assert "vertices: 5023" in result.output and "expression:100" in result.output
    assert "identity: 300" in result.output

    result = _run("show", "flame-texture")
    assert "components:4" in result.output and "resolution:8x8" in result.output

    result = _run("remove", "flame2023")
    assert result.exit_code == 0 and not copied.exists()
    assert downloads["model"].exists()  # never the original
    assert "flame2023" not in _run("list").output


def test_show_detects_modified_and_missing_files(home, downloads):
    assert _run("add", str(downloads["model"])).exit_code == 0
    copied = home / "models" / "flame2023" / "flame2023.pkl"
    with copied.open("ab") as handle:
        handle.write(b"x")
    result = _run("show", "flame2023")
    assert result.exit_code == 1 and "(modified)" in result.output
    copied.unlink()
    assert "(missing)" in _run("show", "flame2023").output
    with pytest.raises(FlameFileError, match="no longer exists.*flamekit models remove flame2023"):
        resolve_file(None, "flame")


def test_names_force_link_and_defaults(home, downloads):
    assert _run("add", str(downloads["model"])).exit_code == 0
    result = _run("add", str(downloads["model"]))
    assert result.exit_code == 1 and "--force" in result.output
    result = _run("add", str(downloads["model"]), "--name", "second", "--link")
    assert result.exit_code == 0, result.output
    registry = Registry()
    assert registry.get("second").path == downloads["model"].resolve()  # registered in place
    assert registry.default("flame").name == "flame2023"
    assert _run("default", "second").exit_code == 0
    assert Registry().default("flame").name == "second"
    assert _run("add", str(downloads["model"]), "--force").exit_code == 0
    assert _run("remove", "second").exit_code == 0
    assert downloads["model"].exists()  # linked files are never deleted
    assert Registry().default("flame").name == "flame2023"
    result = _run("show", "nope")
    assert result.exit_code == 1 and "no registered file named 'nope'" in result.output


def test_unusable_inputs_are_explained(home, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    result = _run("add", str(junk))
    assert result.exit_code == 1 and "does not know '.txt'" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("add", str(empty))
    assert result.exit_code == 1 and "holds no file flamekit can use" in result.output
    result = _run("add", str(tmp_path / "missing.zip"))
    assert result.exit_code == 1 and "flame.is.tue.mpg.de" in result.output
    bad = tmp_path / "flame2020.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("generic_model.pkl", b"\x80\x02cos\nsystem\n.")
    result = _run("add", str(bad))
    assert result.exit_code == 1 and "refusing to load 'os.system'" in result.output


def test_damaged_registry_file(home):
    home.mkdir(parents=True)
    (home / "registry.json").write_text("{not json")
    result = _run("list")
    assert result.exit_code == 1 and "registry.json is damaged" in result.output


def test_resolution_precedence(home, downloads, monkeypatch, tmp_path):
    registry = Registry()
    registry.add(downloads["model"])
    registry.add(downloads["model"], name="other", copy=False)
    assert resolve_file(None, "flame")[0].parent.name == "flame2023"  # the default
    monkeypatch.setenv("FLAMEKIT_MODEL", "other")
    assert resolve_file(None, "flame")[0] == downloads["model"].resolve()  # the environment
    explicit = tmp_path / "mine.pkl"
    assert resolve_file(explicit, "flame") == [explicit]  # an explicit path wins
    assert resolve_file("flame2023", "flame")[0].parent.name == "flame2023"
    with pytest.raises(FlameFileError, match="no registered file named 'typo'"):
        resolve_file("typo", "flame")
    monkeypatch.delenv("FLAMEKIT_MODEL")
    assert resolve_file(None, "texture-space") is None


def test_load_head_needs_landmarks_then_works(home, downloads):
    registry = Registry()
    registry.add(downloads["model"])
    with pytest.raises(FlameFileError, match="landmark_embedding.npy"):
        load_head(registry=registry)
    registry.add(downloads["landmarks"])
    registry.add(downloads["texture"])
    model = load_head(registry=registry)
    assert model.is_flame and model.has_landmarks
    assert model.uvs is not None and model.uvs.shape == (12, 2)  # UVs from the texture space
    with pytest.raises(FlameFileError, match="not found.*flamekit models add"):
        load_head(model=str(home / "gone.pkl"), registry=registry)


def test_load_head_falls_back_to_the_demo_head(home):
    with pytest.warns(DemoHeadWarning, match="NOT FLAME"):
        model = load_head()
    assert not model.is_flame and model.has_landmarks
    with pytest.raises(FlameFileError, match="flame.is.tue.mpg.de"):
        load_head(allow_demo=False)


def test_identify_file_kinds(downloads, tmp_path):
    assert identify_file(downloads["model"])[:2] == ("flame", "FLAME 2023")
    assert identify_file(downloads["landmarks"])[0] == "landmarks"
    assert identify_file(downloads["texture"])[0] == "texture-space"
    mp = tmp_path / "mediapipe_landmark_embedding.npz"
    np.savez(
        mp,
        lmk_face_idx=np.zeros(105, np.int64),
        lmk_b_coords=np.full((105, 3), 1 / 3),
        landmark_indices=np.arange(105),
    )
    assert identify_file(mp) == ("mediapipe", "MediaPipe embedding", {"points": 105})


def test_convert_command(home, downloads, tmp_path):
    out = tmp_path / "flame2023.npz"
    result = runner.invoke(app, ["models", "convert", str(downloads["model"]), str(out)])
    assert result.exit_code == 0, result.output
    converted = load_flame(out)
    original = load_flame(downloads["model"])
    np.testing.assert_array_equal(converted.shapedirs, original.shapedirs)
    assert converted.release == "FLAME 2023"
    result = runner.invoke(app, ["models", "add", str(out), "--name", "npz-model"])
    assert result.exit_code == 0 and "flame, FLAME 2023" in result.output
    state = json.loads((home / "registry.json").read_text())
    assert state["entries"]["npz-model"]["details"]["vertices"] == 5023
