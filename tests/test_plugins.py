"""The plugin manager: entry-point discovery, distributions, clashes, environment, every hook.

Third-party plugins are made discoverable without pip: each test writes a ``.dist-info``
folder (METADATA + entry_points.txt) and the plugin's modules into a folder on ``sys.path``,
which is exactly what importlib.metadata reads for an installed distribution.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import flamekit
from flamekit.plugin_types import Detection, Loss, NoFaceError, PluginUnavailableError
from flamekit.plugins import (
    DISABLE_ENV,
    PLUGINS_ENV,
    PluginLoadWarning,
    PluginManager,
    PluginNameClashWarning,
    PluginNotFoundError,
    get_manager,
    inpainter,
    landmark_detector,
    loss,
    reset_manager,
    segmenter,
)
from flamekit.render import backends
from flamekit_cli.main import app
from flamekit_plugins import renderers
from flamekit_plugins.losses import LOSSES
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "flamekit-plugin-example"
BUILTIN_LOSSES = set(LOSSES)  # their names are pinned in test_losses.py
runner = CliRunner()


class Site:
    """A folder on sys.path holding fake installed distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(
        self,
        distribution: str,
        entry_points: dict[str, str],
        modules: dict[str, str] | None = None,
        version: str = "1.0",
    ) -> None:
        info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[flamekit]\n{lines}")
        for name, source in (modules or {}).items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source))
            self.modules.append(name)
        importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def fresh_manager(monkeypatch):
    """Every test starts from a clean environment and rebuilds the process-wide manager."""
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    reset_manager()
    yield
    reset_manager()


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    result = Site(root)
    yield result
    for name in result.modules:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


@pytest.fixture
def example(site, monkeypatch):
    """The example package, discoverable as the distribution flamekit-plugin-example 0.1.0."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    site.add("flamekit-plugin-example", {"example": "flamekit_plugin_example"}, version="0.1.0")
    yield
    for name in [m for m in sys.modules if m.startswith("flamekit_plugin_example")]:
        del sys.modules[name]


def _manager() -> PluginManager:
    """A fresh manager; the warnings are checked through ``problems`` where they matter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        return PluginManager()


def _loss_plugin(class_name: str, names: list[str]) -> str:
    registrations = "".join(f"    register({name!r}, {class_name})\n" for name in names)
    return (
        "from flamekit import hookimpl\n"
        "from flamekit.plugin_types import Loss\n\n"
        f"class {class_name}(Loss):\n"
        "    inputs = ('identity',)\n"
        "    def __call__(self, values):\n"
        "        return values['identity'].sum(1)\n\n"
        "@hookimpl\n"
        "def register_losses(register):\n" + registrations
    )


def _table_row(output: str, *cells: str) -> bool:
    pattern = r"\s+".join(re.escape(cell) for cell in cells)
    return re.search(rf"^{pattern}\b", output, flags=re.M) is not None


# -- built-ins ---------------------------------------------------------------------------------


def test_builtins_load_through_flamekits_own_entry_points():
    manager = _manager()
    losses = manager.list("loss")
    assert BUILTIN_LOSSES <= {info.name for info in losses}
    for info in losses:
        if info.name in BUILTIN_LOSSES:
            assert (info.distribution, info.version) == ("flamekit", flamekit.__version__)
            assert info.entry_point == "builtin-losses" and info.builtin
            assert info.module == "flamekit_plugins.losses"
            assert info.availability() == (True, "")
    torch_backend = manager.get("renderer", "torch")
    assert torch_backend.factory is backends.TorchBackend
    assert torch_backend.entry_point == "builtin-renderers"
    assert manager.get("renderer", "flamekit").factory is backends.FlamekitBackend


def test_installed_entry_points_match_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = declared["entry-points"]["flamekit"]
    installed = importlib.metadata.distribution("flamekit").entry_points.select(group="flamekit")
    assert {ep.name: ep.value for ep in installed} == declared, (
        "flamekit's installed metadata is stale: pip install -e . --no-build-isolation"
    )


def test_missing_builtin_entry_points_explain_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    with pytest.warns(PluginLoadWarning, match="built-in plugins are not registered.*pip install"):
        manager = PluginManager()
    assert manager.list() == []


# -- the example third-party package ------------------------------------------------------------


def test_example_plugin_is_discovered_with_its_distribution(example):
    manager = _manager()
    detector = manager.get("landmark-detector", "example-mean-face")
    assert (detector.distribution, detector.version) == ("flamekit-plugin-example", "0.1.0")
    assert detector.entry_point == "example" and not detector.builtin
    assert detector.module == "flamekit_plugin_example.detector"
    l1 = manager.get("loss", "example-landmark-l1")
    assert (l1.kind, l1.distribution, l1.version) == ("loss", "flamekit-plugin-example", "0.1.0")
    assert BUILTIN_LOSSES <= set(manager.names("loss"))


def test_example_plugin_builds_working_parts(example):
    image = np.full((240, 320, 3), 200, np.uint8)
    image[40:220, 90:250] = (180, 120, 100)
    detection = landmark_detector("example-mean-face").detect(image, "toy.png")
    assert isinstance(detection, Detection) and detection.detector == "example-mean-face"
    assert detection.landmarks.shape == (68, 2) and detection.landmarks.dtype == np.float32
    assert detection.box.tolist() == [90, 40, 249, 219]
    x0, y0, x1, y1 = detection.box
    lmk = detection.landmarks
    assert (lmk[:, 0] >= x0).all() and (lmk[:, 0] <= x1).all()
    assert (lmk[:, 1] >= y0).all() and (lmk[:, 1] <= y1).all()
    assert lmk[8, 1] > lmk[30, 1] > lmk[19, 1], "chin below the nose tip below the brows"
    assert lmk[36, 0] < lmk[45, 0], "the image-left eye corner comes first"
    with pytest.raises(NoFaceError, match="blank.png"):
        landmark_detector("example-mean-face").detect(np.zeros((20, 20, 3), np.uint8), "blank.png")

    l1 = loss("example-landmark-l1")
    pred = torch.zeros(2, 68, 2, requires_grad=True)
    target = torch.zeros(2, 68, 2)
    target[0, :, 0], target[0, :, 1] = 3.0, -4.0
    value = l1({"landmarks2d": pred, "target_landmarks": target})
    assert value.tolist() == [7.0, 0.0]
    value.sum().backward()
    assert pred.grad is not None


def test_cli_lists_the_example_and_the_builtins(example):
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert _table_row(result.output, "KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS")
    assert _table_row(
        result.output,
        "landmark-detector",
        "example-mean-face",
        "flamekit-plugin-example",
        "0.1.0",
        "usable",
    )
    assert _table_row(result.output, "loss", "example-landmark-l1", "flamekit-plugin-example")
    assert _table_row(result.output, "loss", "photometric", "flamekit", flamekit.__version__)
    assert _table_row(result.output, "renderer", "torch", "flamekit")

    only = runner.invoke(app, ["plugins", "--kind", "landmark-detector"])
    assert only.exit_code == 0
    assert "example-mean-face" in only.output and "photometric" not in only.output
    bad = runner.invoke(app, ["plugins", "--kind", "detector"])
    assert bad.exit_code == 2 and "kinds: landmark-detector" in bad.output


def test_the_pipeline_selects_the_example_detector_by_name(example, tmp_path):
    """`flamekit detect --detector example-mean-face` runs the third-party part end to end."""
    image = np.full((96, 128, 3), 200, np.uint8)
    image[20:80, 40:90] = (190, 140, 120)
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "toy.png")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "detect",
            str(tmp_path / "toy.png"),
            "--detector",
            "example-mean-face",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    landmarks = np.load(out / "toy_lmk68.npy")
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    assert (landmarks[:, 0] >= 0).all() and (landmarks[:, 0] < 128).all()


# -- failures are warnings, never crashes -------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(site):
    site.add(
        "broken-plugin",
        {"broken": "fk_test_broken"},
        {"fk_test_broken": "raise RuntimeError('boom')\n"},
    )
    site.add("ghost-plugin", {"ghost": "fk_test_no_such_module"})
    site.add(
        "fine-plugin",
        {"fine": "fk_test_fine"},
        {"fk_test_fine": _loss_plugin("Fine", ["test-fine"])},
    )
    with pytest.warns(PluginLoadWarning) as record:
        manager = PluginManager()
    messages = [str(w.message) for w in record]
    broken = [m for m in messages if "'broken'" in m]
    assert broken and "broken-plugin 1.0" in broken[0] and "RuntimeError: boom" in broken[0]
    ghost = [m for m in messages if "'ghost'" in m]
    assert ghost and "ghost-plugin" in ghost[0] and "ModuleNotFoundError" in ghost[0]
    assert manager.get("loss", "test-fine").distribution == "fine-plugin"
    assert BUILTIN_LOSSES <= set(manager.names("loss"))
    assert set(broken + ghost) <= set(manager.problems)

    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert re.search(r"warning: .*'broken'.*broken-plugin.*RuntimeError: boom", result.output)
    assert "test-fine" in result.output


def test_a_hook_that_raises_is_reported_and_its_registrations_skipped(site):
    source = """
        from flamekit import hookimpl
        from flamekit.plugin_types import Segmenter

        class Everything(Segmenter):
            def segment(self, image, landmarks=None, source="<image>"):
                return image[..., 0] >= 0

        @hookimpl
        def register_losses(register):
            register("test-half-registered", Everything)
            raise ValueError("bad config")

        @hookimpl
        def register_segmenters(register):
            register("test-everything", Everything)
    """
    site.add("raising-plugin", {"raising": "fk_test_raising"}, {"fk_test_raising": source})
    with pytest.warns(
        PluginLoadWarning, match=r"raising-plugin.*register_losses raised ValueError"
    ):
        manager = PluginManager()
    assert "test-half-registered" not in manager.names("loss")
    assert manager.get("segmenter", "test-everything").distribution == "raising-plugin"


def test_invalid_registrations_and_unknown_hooks_warn(site):
    source = """
        from flamekit import hookimpl

        @hookimpl
        def register_loss(register):
            pass

        @hookimpl
        def register_inpainters(register):
            register("Bad Name", object)
            register("not-callable", 42)
    """
    site.add("sloppy-plugin", {"sloppy": "fk_test_sloppy"}, {"fk_test_sloppy": source})
    site.add("empty-plugin", {"empty": "fk_test_empty"}, {"fk_test_empty": "VALUE = 1\n"})
    manager = _manager()
    problems = "\n".join(manager.problems)
    assert "'register_loss', which is not a flamekit hook (did you mean 'register_losses'?)" in (
        problems
    )
    assert "invalid name 'Bad Name'" in problems
    assert "'not-callable' with a factory that is not callable" in problems
    assert re.search(
        r"'empty' of distribution empty-plugin 1.0 implements no flamekit hook", problems
    )
    assert "Bad Name" not in manager.names("inpainter")
    assert "not-callable" not in manager.names("inpainter")


# -- names: clashes and unknown names -----------------------------------------------------------


def test_a_name_clash_warns_naming_both_distributions_and_the_first_wins(site):
    site.add(
        "aaa-first",
        {"first": "fk_test_first"},
        {"fk_test_first": _loss_plugin("First", ["test-dup"])},
    )
    site.add(
        "bbb-second",
        {"second": "fk_test_second"},
        {"fk_test_second": _loss_plugin("Second", ["test-dup"])},
    )
    # sorts before "flamekit" by name, yet built-ins load first
    site.add(
        "aardvark",
        {"aardvark": "fk_test_aardvark"},
        {"fk_test_aardvark": _loss_plugin("Mine", ["landmark"])},
    )
    with pytest.warns(PluginNameClashWarning) as record:
        manager = PluginManager()
    messages = [str(w.message) for w in record if issubclass(w.category, PluginNameClashWarning)]
    dup = [m for m in messages if "'test-dup'" in m]
    assert len(dup) == 1 and "bbb-second" in dup[0] and "aaa-first" in dup[0]
    assert dup[0].endswith("keeping the one from aaa-first")
    assert manager.get("loss", "test-dup").distribution == "aaa-first"
    assert manager.get("loss", "test-dup").factory.__name__ == "First"
    builtin = [m for m in messages if "'landmark'" in m]
    assert builtin and "aardvark" in builtin[0] and "keeping the one from flamekit" in builtin[0]
    assert manager.get("loss", "landmark").distribution == "flamekit"


def test_unknown_names_list_the_known_ones():
    manager = _manager()
    with pytest.raises(PluginNotFoundError) as info:
        manager.get("loss", "photometrik")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert message.startswith("no loss plugin named 'photometrik'; known: ")
    assert "landmark, landmark-robust" in message and "photometric" in message
    assert set(info.value.known) >= BUILTIN_LOSSES
    with pytest.raises(PluginNotFoundError, match="'photometric' is a loss"):
        manager.create("renderer", "photometric")
    with pytest.raises(PluginNotFoundError, match="no inpainter plugin named 'teleaa'; known: "):
        inpainter("teleaa")
    with pytest.raises(ValueError, match="unknown plugin kind 'losses'; kinds: landmark-detector"):
        manager.list("losses")


# -- environment variables ----------------------------------------------------------------------


def _two_plugins(site: Site) -> None:
    site.add(
        "alpha-plugin",
        {"alpha": "fk_test_alpha"},
        {"fk_test_alpha": _loss_plugin("A", ["test-alpha"])},
    )
    site.add(
        "beta-plugin", {"beta": "fk_test_beta"}, {"fk_test_beta": _loss_plugin("B", ["test-beta"])}
    )


def test_disable_plugins_blocks_by_entry_point_and_all_blocks_third_party(site, monkeypatch):
    _two_plugins(site)
    monkeypatch.setenv(DISABLE_ENV, "alpha")
    manager = _manager()
    assert "test-alpha" not in manager.names("loss") and "test-beta" in manager.names("loss")
    [disabled] = manager.disabled
    assert (disabled.entry_point, disabled.distribution) == ("alpha", "alpha-plugin")
    assert DISABLE_ENV in disabled.reason
    result = runner.invoke(app, ["plugins"])
    assert "disabled: entry point 'alpha' of alpha-plugin 1.0" in result.output

    monkeypatch.setenv(DISABLE_ENV, "all")
    manager = _manager()
    assert not {"test-alpha", "test-beta"} & set(manager.names("loss"))
    assert BUILTIN_LOSSES <= set(manager.names("loss")), "built-ins still load"
    with pytest.raises(PluginNotFoundError, match="disabled by the environment: alpha, beta"):
        manager.get("loss", "test-alpha")

    monkeypatch.setenv(DISABLE_ENV, " builtin-losses , beta-plugin")  # names or distributions
    manager = _manager()
    assert manager.names("loss") == ["test-alpha"]
    assert "torch" in manager.names("renderer")


def test_plugins_allowlist_applies_to_third_party_plugins(site, monkeypatch):
    _two_plugins(site)
    monkeypatch.setenv(PLUGINS_ENV, "beta")
    manager = _manager()
    assert "test-beta" in manager.names("loss") and "test-alpha" not in manager.names("loss")
    assert BUILTIN_LOSSES <= set(manager.names("loss"))
    assert [(d.entry_point, d.reason) for d in manager.disabled] == [
        ("alpha", f"not listed in {PLUGINS_ENV}")
    ]
    monkeypatch.setenv(PLUGINS_ENV, "Alpha_Plugin")  # a distribution name, normalized
    assert "test-alpha" in _manager().names("loss")


# -- every hook ---------------------------------------------------------------------------------

EVERY_HOOK = """
    import numpy as np
    from flamekit import hookimpl
    from flamekit.plugin_types import Detection, Inpainter, LandmarkDetector, Loss, Segmenter
    from flamekit.render.backends import TorchBackend

    class Corner(LandmarkDetector):
        def __init__(self, offset=0.0):
            self.offset = offset

        def detect(self, image, source="<image>"):
            h, w = image.shape[:2]
            points = np.full((68, 2), self.offset, np.float32)
            return Detection(points, [0, 0, w - 1, h - 1], 1.0, 1, (h, w), self.name)

    class Everything(Segmenter):
        def segment(self, image, landmarks=None, source="<image>"):
            return np.ones(image.shape[:2], bool)

    class MeanFill(Inpainter):
        def inpaint(self, image, known):
            known = known.to(image)
            area = known.sum((2, 3), keepdim=True).clamp_min(1)
            mean = (image * known).sum((2, 3), keepdim=True) / area
            return image * known + mean * (1 - known)

    class Norm(Loss):
        inputs = ("identity",)

        def __call__(self, values):
            return values["identity"].abs().sum(1)

    class Alias(TorchBackend):
        name = "test-alias"

    class NeedsWeights(Loss):
        @classmethod
        def availability(cls):
            return False, "weights missing: put them in ~/.cache"

        def __call__(self, values):
            raise AssertionError("never built")

    class BrokenCheck(Loss):
        @classmethod
        def availability(cls):
            return 1 / 0

        def __call__(self, values):
            raise AssertionError("never built")

    def not_a_loss():
        return object()

    @hookimpl
    def register_landmark_detectors(register):
        register("test-corner", Corner)

    @hookimpl
    def register_segmenters(register):
        register("test-everything", Everything)

    @hookimpl
    def register_inpainters(register):
        register("test-mean-fill", MeanFill)

    @hookimpl
    def register_losses(register):
        register("test-norm", Norm)
        register("test-needs-weights", NeedsWeights)
        register("test-broken-check", BrokenCheck)
        register("test-not-a-loss", not_a_loss)

    @hookimpl
    def register_renderers(register):
        register("test-alias", Alias)
"""


@pytest.fixture
def every_hook(site):
    site.add("every-hook", {"every": "fk_test_every"}, {"fk_test_every": EVERY_HOOK}, "2.3")


def test_every_hook_registers_parts_that_build_and_run(every_hook):
    manager = get_manager()
    for kind, name in [
        ("landmark-detector", "test-corner"),
        ("segmenter", "test-everything"),
        ("inpainter", "test-mean-fill"),
        ("loss", "test-norm"),
        ("renderer", "test-alias"),
    ]:
        info = manager.get(kind, name)
        assert (info.kind, info.distribution, info.version) == (kind, "every-hook", "2.3")
        assert info.module == "fk_test_every" and info.entry_point == "every"

    image = np.zeros((6, 8, 3), np.uint8)
    detection = landmark_detector("test-corner", offset=2.0).detect(image)
    assert detection.landmarks[0].tolist() == [2.0, 2.0] and detection.detector == "test-corner"
    assert segmenter("test-everything").segment(image).all()
    known = torch.zeros(1, 1, 2, 2)
    known[..., 0, 0] = 1
    filled = inpainter("test-mean-fill").inpaint(torch.full((1, 3, 2, 2), 0.5), known)
    assert torch.allclose(filled, torch.full((1, 3, 2, 2), 0.5))
    assert loss("test-norm")({"identity": torch.tensor([[1.0, -2.0]])}).tolist() == [3.0]

    # renderer plugins become backends: Renderer(backend="test-alias") can select them
    assert backends.list_backends()["test-alias"] == (True, "")
    assert type(backends.get_backend("test-alias")).__name__ == "Alias"
    reset_manager()
    assert "test-alias" not in backends._REGISTRY
    assert type(backends.get_backend("test-alias")).__name__ == "Alias", "a lookup reloads"


def test_availability_is_reported_and_checked_before_building(every_hook):
    manager = _manager()
    assert manager.get("loss", "test-needs-weights").availability() == (
        False,
        "weights missing: put them in ~/.cache",
    )
    usable, reason = manager.get("loss", "test-broken-check").availability()
    assert not usable and reason.startswith("availability check failed: ZeroDivisionError")
    with pytest.raises(PluginUnavailableError, match="from every-hook.*weights missing"):
        manager.create("loss", "test-needs-weights")
    with pytest.raises(
        TypeError, match="returned 'object', which is not a flamekit.plugin_types.Loss"
    ):
        manager.create("loss", "test-not-a-loss")
    with pytest.raises(TypeError):
        manager.create("loss", "test-norm", no_such_option=1)
    result = runner.invoke(app, ["plugins", "--kind", "loss"])
    assert _table_row(
        result.output, "loss", "test-needs-weights", "every-hook", "2.3", "unavailable: weights"
    )


def test_plugins_can_be_registered_in_process():
    class Plugin:
        @flamekit.hookimpl
        def register_losses(self, register):
            register("test-in-process", Norm)

    class Norm(Loss):
        def __call__(self, values):
            return values["identity"].sum(1)

    manager = get_manager()
    assert manager.register_plugin(Plugin(), "notebook")
    info = manager.get("loss", "test-in-process")
    assert (info.distribution, info.entry_point) == ("<in-process>", "notebook")


# -- renderers: nvdiffrast ----------------------------------------------------------------------


def test_nvdiffrast_is_not_listed_when_it_is_not_installed():
    if renderers.nvdiffrast_importable():
        pytest.skip("nvdiffrast is installed here")
    assert "nvdiffrast" not in _manager().names("renderer")
    assert "nvdiffrast" not in backends.list_backends()
    usable, reason = renderers.NvdiffrastBackend.availability()
    assert not usable and "nvdiffrast is not installed" in reason


@pytest.fixture
def fake_nvdiffrast(monkeypatch):
    """A stand-in ``nvdiffrast.torch`` that records its calls and rasterizes with flamekit."""
    from flamekit.render import torch_ops

    calls = []

    class RasterizeCudaContext:
        def __init__(self, device=None):
            self.device = device

    def rasterize(context, pos, tri, resolution):
        calls.append(("rasterize", context, pos.dtype, tri.dtype, resolution))
        return torch_ops.rasterize(pos, tri, tuple(resolution)), None

    def interpolate(attr, rast, tri):
        calls.append(("interpolate", tuple(attr.shape), attr.dtype, tri.dtype))
        return torch_ops.interpolate(attr, rast, tri), None

    package = types.ModuleType("nvdiffrast")
    module = types.ModuleType("nvdiffrast.torch")
    module.RasterizeCudaContext = RasterizeCudaContext
    module.rasterize = rasterize
    module.interpolate = interpolate
    package.torch = module
    monkeypatch.setitem(sys.modules, "nvdiffrast", package)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", module)
    return calls


def test_nvdiffrast_registers_when_it_can_be_imported(fake_nvdiffrast, monkeypatch):
    registered = {}
    renderers.register_renderers(lambda name, factory: registered.setdefault(name, factory))
    assert registered == {
        "flamekit": backends.FlamekitBackend,
        "torch": backends.TorchBackend,
        "nvdiffrast": renderers.NvdiffrastBackend,
    }
    manager = get_manager()
    info = manager.get("renderer", "nvdiffrast")
    assert (info.distribution, info.entry_point) == ("flamekit", "builtin-renderers")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert info.availability() == (
        False,
        "nvdiffrast's RasterizeCudaContext needs a CUDA device; torch sees none",
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert info.availability() == (True, "")
    backend = backends.get_backend("nvdiffrast")  # what Renderer(backend="nvdiffrast") calls
    assert isinstance(backend, renderers.NvdiffrastBackend)
    reset_manager()
    assert "nvdiffrast" not in backends._REGISTRY


def test_nvdiffrast_adapter_passes_nvdiffrast_conventions(fake_nvdiffrast):
    backend = renderers.NvdiffrastBackend()
    pos = torch.tensor([[[-0.8, -0.8, 0.0, 1.0], [0.8, -0.8, 0.0, 1.0], [0.0, 0.8, 0.0, 1.0]]])
    tri = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="CUDA tensors only"):
        backend.rasterize(pos, tri, (8, 6))
    context = object()
    backend._context = lambda device: context
    rast = backend.rasterize(pos.double(), tri, (8, 6))
    assert fake_nvdiffrast[-1] == ("rasterize", context, torch.float32, torch.int32, [8, 6])
    assert rast.dtype == torch.float64 and rast.shape == (1, 8, 6, 4)
    from flamekit.render import torch_ops

    assert torch.equal(rast.float(), torch_ops.rasterize(pos, tri.int(), (8, 6)))
    colours = torch.eye(3)  # [V,C], shared by the batch
    image = backend.interpolate(colours, rast, tri)
    assert fake_nvdiffrast[-1] == ("interpolate", (1, 3, 3), torch.float32, torch.int32)
    assert image.shape == (1, 8, 6, 3)
    covered = rast[..., 3] > 0
    assert torch.allclose(image[covered].sum(-1), torch.ones(int(covered.sum())))
