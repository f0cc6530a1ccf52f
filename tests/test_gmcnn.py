"""The GMCNN inpainter and its trainer, on tiny synthetic UV maps (CPU, a few seconds)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import flamekit.inpaint_training as training
from flamekit.inpaint_training import random_stroke_mask, train_inpainter
from flamekit.plugin_types import PluginUnavailableError
from flamekit_plugins.inpainters.gmcnn import (
    GMCNN,
    WEIGHTS_NAME,
    GmcnnInpainter,
    load_checkpoint,
    load_gmcnn,
)

# Small and fast: the trainer's behaviour, not the quality of a real-size network, is tested.
TINY = {"base_channels": 8, "batch_size": 4, "lr": 1e-3, "progress": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions spend more time synchronising threads than computing (and a busy
    machine makes that much worse): one thread keeps these tests fast and deterministic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_maps(n: int = 16, size: int = 32, seed: int = 0):
    """Smooth colour gradients, known inside a disc (like the seen part of a UV map)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.rand(n, 3, 1, 1, generator=g) * 0.5 + 0.25
    dx = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    dy = torch.rand(n, 3, 1, 1, generator=g) - 0.5
    maps = (base + dx * (xs - 0.5) + dy * (ys - 0.5)).clamp(0, 1)
    valid = (((xs - 0.5) ** 2 + (ys - 0.5) ** 2).sqrt() < 0.42).expand(n, 1, size, size).clone()
    return maps, valid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 40-step training run, shared by the tests that need a checkpoint."""
    maps, valid = synthetic_maps()
    out = tmp_path_factory.mktemp("gmcnn") / "inpainter.pt"
    result = train_inpainter(maps, valid, out, steps=40, save_every=15, **TINY)
    return maps, valid, result


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (20, 36)])
def test_network_output_shape(size):
    net = GMCNN(base_channels=4)
    image = torch.rand(2, 3, *size)
    known = (torch.rand(2, 1, *size) > 0.3).float()
    out = net(image, known)
    assert out.shape == image.shape
    assert torch.all(out[known.expand_as(out) > 0] == image[known.expand_as(out) > 0])
    raw = net(image, known, blend=False)
    assert raw.shape == image.shape and raw.min() >= 0 and raw.max() <= 1


def test_network_rejects_sizes_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        GMCNN(base_channels=4)(torch.rand(1, 3, 30, 32), torch.ones(1, 1, 30, 32))


def test_stroke_masks_lie_inside_the_valid_region():
    g = torch.Generator().manual_seed(3)
    _, valid = synthetic_maps(n=4, size=40)
    holes = np.zeros((40, 40), bool)
    holes[5:20, 10:30] = True
    for region in [valid[0, 0].numpy(), ~holes, np.ones((40, 40), bool)]:
        for _ in range(25):
            mask = random_stroke_mask(region, g)
            assert mask.shape == region.shape and mask.dtype == bool
            assert mask.any()
            assert not (mask & ~region).any()
            assert mask.sum() < region.sum()  # leaves something known around the strokes
    assert not random_stroke_mask(np.zeros((16, 16), bool), g).any()


def test_training_lowers_the_loss_and_writes_a_checkpoint(trained):
    _, _, result = trained
    assert result.steps_done == 40 and result.steps_run == 40 and len(result.losses) == 40
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.8 * first, (first, last)
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint["step"] == 40
    assert checkpoint["settings"]["base_channels"] == 8
    assert {"model", "optimizer", "rng", "losses"} <= set(checkpoint)
    assert not list(result.checkpoint.parent.glob(".*.tmp"))  # atomic writes left nothing


def test_resume_runs_only_the_missing_steps(trained, tmp_path):
    maps, valid, result = trained
    out = tmp_path / "resumed.pt"
    shutil.copy(result.checkpoint, out)
    more = train_inpainter(maps, valid, out, steps=45, **TINY)
    assert more.steps_done == 45 and more.steps_run == 5
    assert more.losses[:40] == result.losses
    before = out.read_bytes()
    again = train_inpainter(maps, valid, out, steps=45, **TINY)
    assert again.steps_run == 0 and again.steps_done == 45 and again.losses == more.losses
    assert out.read_bytes() == before
    fewer = train_inpainter(maps, valid, out, steps=10, **TINY)  # target already passed
    assert fewer.steps_run == 0 and fewer.steps_done == 45


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    """Optimizer and generator state are checkpointed, so 6 + 6 steps equal 12 steps."""
    maps, valid = synthetic_maps(n=8, size=16)
    split, whole = tmp_path / "split.pt", tmp_path / "whole.pt"
    train_inpainter(maps, valid, split, steps=6, **TINY)
    resumed = train_inpainter(maps, valid, split, steps=12, **TINY)
    straight = train_inpainter(maps, valid, whole, steps=12, **TINY)
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-5, atol=1e-6)


def test_resume_false_starts_over_and_mismatched_network_is_refused(tmp_path):
    maps, valid = synthetic_maps(n=4, size=16)
    out = tmp_path / "c.pt"
    train_inpainter(maps, valid, out, steps=3, **TINY)
    with pytest.raises(ValueError, match="differs from the requested"):
        train_inpainter(maps, valid, out, steps=6, **{**TINY, "base_channels": 4})
    fresh = train_inpainter(maps, valid, out, steps=2, resume=False, **TINY)
    assert fresh.steps_done == 2 and fresh.steps_run == 2 and len(fresh.losses) == 2


def test_ctrl_c_saves_a_checkpoint_before_reraising(tmp_path, monkeypatch):
    maps, valid = synthetic_maps(n=4, size=16)
    out = tmp_path / "c.pt"
    real, calls = training.random_stroke_mask, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3 * TINY["batch_size"]:  # during the 4th step
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "random_stroke_mask", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_inpainter(maps, valid, out, steps=20, save_every=0, **TINY)
    assert load_checkpoint(out)["step"] == 3
    monkeypatch.setattr(training, "random_stroke_mask", real)
    result = train_inpainter(maps, valid, out, steps=5, **TINY)
    assert result.steps_run == 2 and result.steps_done == 5


def test_inpainter_keeps_known_texels_exactly(trained):
    maps, valid, result = trained
    inpainter = GmcnnInpainter(weights=result.checkpoint)
    g = torch.Generator().manual_seed(1)
    for size in [(32, 32), (30, 27)]:  # the second is resized to a multiple of 8 and back
        image = torch.rand(3, 3, *size, generator=g)
        known = torch.rand(3, 1, *size, generator=g) > 0.4
        filled = inpainter.inpaint(image, known)
        assert filled.shape == image.shape and filled.dtype == image.dtype
        mask = known.expand_as(image)
        assert torch.equal(filled[mask], image[mask])
        assert torch.isfinite(filled).all() and filled.min() >= 0 and filled.max() <= 1
    # float masks work too, and a fill of a smooth map is close to the hidden truth
    known = valid[:2].float()
    hole = torch.zeros_like(known)
    hole[..., 12:20, 12:20] = 1
    filled = inpainter.inpaint(maps[:2], known * (1 - hole))
    inside = hole.expand(-1, 3, -1, -1) > 0
    assert (filled[inside] - maps[:2][inside]).abs().mean() < 0.2


def test_availability_follows_the_default_weights(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path))
    usable, reason = GmcnnInpainter.availability()
    assert not usable
    assert "no trained GMCNN weights" in reason and "flamekit train-inpainter" in reason
    assert "weights=PATH" in reason
    with pytest.raises(PluginUnavailableError, match="no trained GMCNN weights"):
        GmcnnInpainter(weights=tmp_path / "missing.pt")
    (tmp_path / "weights").mkdir()
    shutil.copy(trained[2].checkpoint, tmp_path / "weights" / WEIGHTS_NAME)
    assert GmcnnInpainter.availability() == (True, "")
    image, known = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    known[..., 4:8, 4:8] = 0
    assert GmcnnInpainter().inpaint(image, known).shape == image.shape


def test_wrong_checkpoints_give_clear_errors(trained, tmp_path):
    good = load_checkpoint(trained[2].checkpoint)
    cases = {
        "garbage.pt": (b"not a checkpoint", "cannot read a GMCNN checkpoint"),
        "other.pt": ({"state_dict": {}}, "missing keys format, version, settings, model, step"),
        "format.pt": ({**good, "format": "something-else"}, "checkpoint format is"),
        "settings.pt": ({**good, "settings": {"base_channels": 8}}, "lack kernel_sizes"),
        "keys.pt": (
            {**good, "model": {k: v for k, v in good["model"].items() if "fuse" not in k}},
            "missing keys fuse.0.0.bias",
        ),
        "width.pt": (
            {**good, "settings": {**good["settings"], "base_channels": 4}},
            "do not fit the GMCNN settings",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(PluginUnavailableError, match=message):
            load_gmcnn(path)
        with pytest.raises(PluginUnavailableError, match=message):  # at first use
            GmcnnInpainter(weights=path).inpaint(torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8))


def test_train_inpainter_command_trains_and_the_plugin_uses_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flamekit import plugins
    from flamekit_cli.main import app

    monkeypatch.setenv("FLAMEKIT_HOME", str(tmp_path / "home"))
    ys, xs = np.mgrid[0:16, 0:16] / 15.0
    maps = np.stack([np.stack([xs, ys, 0.5 * (xs + ys)]) for _ in range(4)]).astype(np.float32)
    valid = np.ones((4, 1, 16, 16), np.float32)
    np.savez(tmp_path / "maps.npz", maps=maps, valid=valid)
    plugins.reset_manager()
    usable, reason = plugins.get_manager().get("inpainter", "gmcnn").availability()
    assert not usable and "train-inpainter" in reason
    result = CliRunner().invoke(
        app,
        [
            "train-inpainter",
            str(tmp_path / "maps.npz"),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--base-channels",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained to step 3" in result.output
    plugins.reset_manager()
    inpainter = plugins.inpainter("gmcnn")
    image = torch.from_numpy(maps[:1])
    known = torch.ones(1, 1, 16, 16)
    known[..., 4:10, 4:10] = 0
    filled = inpainter.inpaint(image, known)
    assert filled.shape == image.shape
    assert torch.equal(filled[known.expand_as(filled) > 0], image[known.expand_as(image) > 0])
