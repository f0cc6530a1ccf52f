"""Shared fixtures: the ../shared test data (skipped cleanly when absent) and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from flamekit import extension_available

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLAMEKIT_SHARED", REPO_ROOT.parent / "shared")) / "data"

requires_extension = pytest.mark.skipif(
    not extension_available(),
    reason="flamekit._C is not built (pip install -e . --no-build-isolation)",
)


def _cuda_ready() -> bool:
    if not torch.cuda.is_available() or not extension_available():
        return False
    from flamekit._extension import load_extension

    return bool(load_extension().built_with_cuda())


requires_cuda = pytest.mark.skipif(
    not _cuda_ready(), reason="needs a CUDA GPU and flamekit._C built with CUDA"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def flame_topology(shared_data):
    """The real FLAME topology with UVs (positions of a different head, centred here)."""
    from flamekit.io.obj import load_obj

    path = shared_data / "flame_topology" / "head_template_mesh.obj"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    mesh = load_obj(path)
    mesh.vertices = mesh.vertices - mesh.vertices.mean(0)
    return mesh
