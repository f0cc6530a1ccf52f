"""The Ray executor: fit and unwrap as Ray tasks give the same work files and space as local.

Slow (starting Ray workers takes seconds); runs only where Ray is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from flamekit.model.texture_space import load_texture_space
from flamekit.texture.build import build_space
from tests.conftest import requires_extension
from tests.test_build_space import NUM_IMAGES, T, _config, _init_space, demo, head, photos

ray = pytest.importorskip("ray")

pytestmark = [requires_extension, pytest.mark.slow]

__all__ = ["demo", "head", "photos"]  # fixtures shared with test_build_space


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for this module, shut down afterwards."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_executor_builds_the_same_space(photos, head, demo, tmp_path, monkeypatch, local_ray):
    folder, _ = photos
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    images = [folder / f"face_{i:02d}.png" for i in range(NUM_IMAGES)]
    kwargs = dict(
        init_space=str(_init_space(demo, tmp_path)),
        num_components=4,
        config=_config(),
        model=head,
        landmarks=folder,
        masks=folder,
        texture_size=T,
        batch_size=NUM_IMAGES // 2,  # two fit tasks, run side by side
        progress=False,
    )
    local = build_space(images, out=tmp_path / "local.npz", work_dir=tmp_path / "wl", **kwargs)
    remote = build_space(
        images, out=tmp_path / "ray.npz", work_dir=tmp_path / "wr", executor="ray", **kwargs
    )
    assert local.ok and remote.ok, remote.format()
    assert remote.done["fit"] == remote.done["unwrap"] == NUM_IMAGES
    assert ray.is_initialized()  # a Ray the caller started is left running
    # Same per-image files and space. Equality is checked within a tolerance, not bitwise: a
    # Ray task runs torch with OMP_NUM_THREADS = its CPUs (1), the driver with 2, and thread
    # counts may change the order of float sums (measured here: identical, difference 0).
    worst = 0.0
    for i in range(NUM_IMAGES):
        a = np.load(tmp_path / "wl" / "fits" / f"face_{i:02d}.npz")
        b = np.load(tmp_path / "wr" / "fits" / f"face_{i:02d}.npz")
        assert sorted(a.files) == sorted(b.files)
        worst = max(worst, float(np.abs(a["vertices"] - b["vertices"]).max()))
    x, y = load_texture_space(tmp_path / "local.npz"), load_texture_space(tmp_path / "ray.npz")
    mean_diff = (x.mean - y.mean).abs().max().item()
    comp_diff = (x.components - y.components).abs().max().item()  # signs are deterministic
    print(f"max |diff|: fit vertices {worst:.2e}, mean {mean_diff:.2e}, components {comp_diff:.2e}")
    assert worst < 1e-4 and mean_diff < 1e-4 and comp_diff < 1e-4
    np.testing.assert_allclose(x.std.numpy(), y.std.numpy(), rtol=1e-4)

    # Resume through Ray: nothing is redone, and a deleted fit is redone as a task.
    (tmp_path / "wr" / "fits" / "face_05.npz").unlink()
    again = build_space(
        images, out=tmp_path / "ray.npz", work_dir=tmp_path / "wr", executor="ray", **kwargs
    )
    assert again.done["fit"] == 1 and again.reused["fit"] == NUM_IMAGES - 1
    assert again.done["unwrap"] == 1 and again.ok
