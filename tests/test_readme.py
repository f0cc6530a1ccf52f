"""The README's Python examples run as written (on the demo head, with a tiny texture space)."""

from __future__ import annotations

import re
import warnings

import numpy as np

from tests.conftest import REPO_ROOT


def _python_block(after_heading: str) -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(after_heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block after {after_heading!r}"
    return match.group(1)


def test_model_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    np.savez(  # the FLAME_texture.npz layout, tiny: 8x8 texels, 50 components
        "FLAME_texture.npz",
        mean=rng.random((8, 8, 3)) * 255,
        tex_dir=rng.normal(size=(8, 8, 3, 50)),
    )
    code = _python_block("## Model API (`flamekit.model`)")
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the demo-head warning is expected here
        exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert out.vertices.shape[0] == 2 and out.landmarks.shape == (2, 68, 3)
    assert (tmp_path / "head" / "mesh.obj").is_file()
    assert (tmp_path / "head" / "mesh.mtl").is_file()
    assert (tmp_path / "head.ply").is_file()
