"""Loading FLAME files of every flavour without chumpy, and refusing anything that is not data."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from flamekit.model import FlameFileError, convert_flame_to_npz, load_flame, save_flame_npz
from flamekit.model.loader import guess_release
from tests.conftest import SHARED
from tests.flame_fixtures import shared_flame_dict, synthetic_flame_dict, write_pickle

SHARED_MODEL = SHARED / "flame_test_model" / "flame2023_open_test.pkl"


@pytest.fixture(scope="module")
def raw_model() -> dict:
    """The shared test model as plain arrays when present, else a synthetic FLAME-shaped one."""
    raw = shared_flame_dict(SHARED) if SHARED.is_dir() else None
    return raw if raw is not None else synthetic_flame_dict()


def _assert_same(data, raw: dict) -> None:
    np.testing.assert_allclose(data.v_template, raw["v_template"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(data.faces, np.asarray(raw["f"], dtype=np.int64))
    np.testing.assert_allclose(data.shapedirs, raw["shapedirs"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(data.posedirs, raw["posedirs"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        data.j_regressor, np.asarray(raw["J_regressor"]), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(data.lbs_weights, raw["weights"], rtol=1e-6, atol=1e-9)
    assert data.parents.tolist() == [-1, 0, 1, 1, 1]
    assert data.num_identity == 300 and data.num_expression == 100
    for name in ("v_template", "shapedirs", "posedirs", "j_regressor", "lbs_weights"):
        assert getattr(data, name).dtype == np.float32


def test_shared_test_model_loads(shared_data):
    data = load_flame(shared_data / "flame_test_model" / "flame2023_open_test.pkl")
    assert data.num_vertices == 5023 and data.num_faces == 9976
    assert data.release == "FLAME 2023 Open"
    np.testing.assert_allclose(data.j_regressor.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(data.lbs_weights.sum(1), 1.0, atol=1e-5)


def _install_fake_chumpy() -> type:
    """A stand-in ``chumpy`` whose ``Ch`` pickles like chumpy's: its __dict__ with ``x``."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:  # noqa: D401 - mimics chumpy.ch.Ch's pickled form
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = {"x"}
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    chumpy.ch = ch
    chumpy.Ch = Ch
    sys.modules["chumpy"] = chumpy
    sys.modules["chumpy.ch"] = ch
    return Ch


def _remove_fake_chumpy() -> None:
    sys.modules.pop("chumpy", None)
    sys.modules.pop("chumpy.ch", None)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pickle_loads_without_chumpy(raw_model, tmp_path, protocol):
    Ch = _install_fake_chumpy()
    try:
        obj = dict(raw_model)
        for key in ("v_template", "shapedirs", "posedirs", "weights"):
            obj[key] = Ch(raw_model[key])
        path = write_pickle(tmp_path / "generic_model.pkl", obj, protocol=protocol)
    finally:
        _remove_fake_chumpy()
    assert b"chumpy" in path.read_bytes()
    assert "chumpy" not in sys.modules
    data = load_flame(path)
    assert "chumpy" not in sys.modules  # nothing imported it
    _assert_same(data, raw_model)
    assert data.release == "FLAME 2020 (generic)"


def test_python2_era_module_names_load(raw_model, tmp_path):
    """FLAME 2020 was pickled by Python 2: copy_reg, __builtin__, numpy.core.multiarray."""
    Ch = _install_fake_chumpy()
    try:
        obj = dict(raw_model, v_template=Ch(raw_model["v_template"]))
        blob = pickle.dumps(obj, protocol=0)
    finally:
        _remove_fake_chumpy()
    blob = blob.replace(b"ccopyreg\n", b"ccopy_reg\n").replace(b"cbuiltins\n", b"c__builtin__\n")
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"copy_reg" in blob and b"numpy.core.multiarray" in blob
    path = tmp_path / "male_model.pkl"
    path.write_bytes(blob)
    data = load_flame(path)
    _assert_same(data, raw_model)
    assert data.release == "FLAME 2020 (male)"


def test_sparse_regressor_pickle(raw_model, tmp_path):
    sparse = pytest.importorskip("scipy.sparse")
    obj = dict(raw_model, J_regressor=sparse.csc_matrix(np.asarray(raw_model["J_regressor"])))
    data = load_flame(write_pickle(tmp_path / "flame2023.pkl", obj))
    _assert_same(data, raw_model)
    assert data.release == "FLAME 2023"
    obj["J_regressor"] = sparse.csr_matrix(np.asarray(raw_model["J_regressor"]))
    _assert_same(load_flame(write_pickle(tmp_path / "flame2023_no_jaw.pkl", obj)), raw_model)


def test_sparse_pickle_loads_without_scipy(raw_model, tmp_path):
    """The loader rebuilds scipy matrices itself: it works where scipy is not installed."""
    sparse = pytest.importorskip("scipy.sparse")
    obj = dict(raw_model, J_regressor=sparse.csc_matrix(np.asarray(raw_model["J_regressor"])))
    path = write_pickle(tmp_path / "flame2023_Open.pkl", obj)
    expected = tmp_path / "expected.npy"
    np.save(expected, np.asarray(raw_model["J_regressor"], dtype=np.float32))
    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "import numpy as np\n"
        "from flamekit.model import load_flame\n"
        f"d = load_flame({str(path)!r})\n"
        f"np.testing.assert_allclose(d.j_regressor, np.load({str(expected)!r}), atol=1e-7)\n"
        "assert 'scipy.sparse' not in sys.modules or sys.modules['scipy'] is None\n"
        "print(d.release)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "FLAME 2023 Open" in result.stdout


def test_float64_pickle(raw_model, tmp_path):
    obj = {
        k: (
            np.asarray(v, dtype=np.float64)
            if k not in ("f", "kintree_table", "bs_style", "bs_type")
            else v
        )
        for k, v in raw_model.items()
    }
    data = load_flame(write_pickle(tmp_path / "model64.pkl", obj))
    _assert_same(data, raw_model)
    assert data.release == "FLAME (unknown release)"


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_untrusted_pickle_is_refused_without_running(raw_model, tmp_path):
    marker = tmp_path / "pwned"
    obj = dict(raw_model, bs_style=_Exploit(marker))
    path = write_pickle(tmp_path / "generic_model.pkl", obj)
    with pytest.raises(FlameFileError, match=r"refusing to load '(posix|os|nt)\.system'"):
        load_flame(path)
    assert not marker.exists()


def test_untrusted_class_is_named(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\neval\nX\x06\x00\x00\x001+1==2\x85R.")
    with pytest.raises(FlameFileError, match=r"builtins\.eval"):
        load_flame(path)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FlameFileError) as info:
        load_flame(tmp_path / "generic_model.pkl")
    message = str(info.value)
    assert "generic_model.pkl" in message
    assert "flame.is.tue.mpg.de" in message
    assert "flamekit models add" in message


def test_truncated_pickle(raw_model, tmp_path):
    blob = pickle.dumps(raw_model, protocol=2)
    path = tmp_path / "flame2023.pkl"
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(FlameFileError, match="truncated"):
        load_flame(path)


def test_wrong_shapes_are_named(raw_model, tmp_path):
    bad = dict(raw_model, shapedirs=np.zeros((5023, 3), np.float32))
    with pytest.raises(FlameFileError, match=r"'shapedirs' has shape \(5023, 3\)"):
        load_flame(write_pickle(tmp_path / "a.pkl", bad))
    bad = dict(raw_model, weights=np.zeros((5023, 4), np.float32))
    with pytest.raises(FlameFileError, match=r"'weights' has shape \(5023, 4\), expected"):
        load_flame(write_pickle(tmp_path / "b.pkl", bad))
    bad = dict(raw_model, v_template=np.zeros((100, 3)))
    with pytest.raises(FlameFileError, match=r"'v_template' has shape \(100, 3\)"):
        load_flame(write_pickle(tmp_path / "c.pkl", bad))
    missing = {k: v for k, v in raw_model.items() if k != "posedirs"}
    with pytest.raises(FlameFileError, match="missing posedirs"):
        load_flame(write_pickle(tmp_path / "d.pkl", missing))
    with pytest.raises(FlameFileError, match="NaN"):
        nan = np.array(raw_model["v_template"], dtype=np.float64)
        nan[3, 1] = np.nan
        load_flame(write_pickle(tmp_path / "e.pkl", dict(raw_model, v_template=nan)))


def test_not_a_model_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(FlameFileError, match="neither a FLAME pickle"):
        load_flame(path)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(FlameFileError, match="not a flamekit model file"):
        load_flame(other)


def test_npz_round_trip_and_converter(raw_model, tmp_path):
    source = write_pickle(tmp_path / "flame2023.pkl", raw_model)
    data = load_flame(source)
    data.uvs = np.random.default_rng(0).random((7, 2)).astype(np.float32)
    data.uv_faces = np.zeros((data.num_faces, 3), dtype=np.int64)
    path = save_flame_npz(data, tmp_path / "model.npz")
    again = load_flame(path)
    _assert_same(again, raw_model)
    assert again.release == "FLAME 2023"
    np.testing.assert_array_equal(again.uvs, data.uvs)
    assert again.is_flame
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        assert "format" in npz.files
    converted = convert_flame_to_npz(source, tmp_path / "converted.npz")
    _assert_same(load_flame(converted), raw_model)
    assert not list(tmp_path.glob("*.tmp"))


def test_future_npz_version_refused(raw_model, tmp_path):
    path = save_flame_npz(
        load_flame(write_pickle(tmp_path / "m.pkl", raw_model)), tmp_path / "m.npz"
    )
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["version"] = np.array(99)
    np.savez(path, **arrays)
    with pytest.raises(FlameFileError, match="newer flamekit"):
        load_flame(path)


@pytest.mark.parametrize(
    ("name", "release"),
    [
        ("generic_model.pkl", "FLAME 2020 (generic)"),
        ("female_model.pkl", "FLAME 2020 (female)"),
        ("flame2023.pkl", "FLAME 2023"),
        ("flame2023_no_jaw.pkl", "FLAME 2023 (no jaw)"),
        ("flame2023_Open.pkl", "FLAME 2023 Open"),
        ("my_head.pkl", "FLAME (unknown release)"),
    ],
)
def test_release_names(name, release):
    assert guess_release(Path(name)) == release
