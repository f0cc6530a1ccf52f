"""flamekit imports without its compiled module and says how to build it when needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

BLOCK_EXTENSION = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockExtension(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "flamekit._C":
                raise ImportError("simulated: flamekit._C was never built")
            return None

    sys.meta_path.insert(0, BlockExtension())
    """
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_EXTENSION + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )


def test_import_works_and_first_use_explains_the_build():
    result = run_python(
        """
        import torch
        import flamekit
        from flamekit.render import rasterize, list_backends
        assert not flamekit.extension_available()
        assert list_backends()["flamekit"][0] is False
        try:
            rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (4, 4))
        except flamekit.ExtensionNotBuiltError as exc:
            print(exc)
        else:
            raise SystemExit("no error raised")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "simulated: flamekit._C was never built" in result.stdout
    assert "pip install -e . --no-build-isolation" in result.stdout
    assert "backend='torch'" in result.stdout


def test_torch_backend_renders_without_the_extension():
    result = run_python(
        """
        import torch
        from flamekit.assets.procedural_head import procedural_head
        from flamekit.render import OrthographicCamera, Renderer
        head = procedural_head(resolution=16, texture_size=32)
        r = Renderer(head.faces, head.uvs, head.uv_faces, (32, 32), backend="torch")
        cam = OrthographicCamera(torch.tensor([7.0]), torch.zeros(1, 2))
        out = r(head.vertices[None], head.texture[None], torch.ones(1, 9, 1), cam)
        print(int(out.mask.sum()))
        """
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 100
