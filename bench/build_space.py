"""Benchmark the expensive stages of ``build_space`` (fit + unwrap) in images per minute.

Uses build-space's default fit config (rigid 200 + full 800 iterations at 224x224, texture
offset and exposure prior on),
since a shortened schedule would make the figure meaningless for real builds. Photos are the
shared FFHQ photos with stored landmarks and masks (../shared/data/faces) fitted with the
FLAME test model when present, else synthetic renders of the demo head. Prints the figure
and writes bench/results/build-space-<device>.json.

    python bench/build_space.py --images 8                 # CPU
    python bench/build_space.py --device cuda --images 64 --batch-size 32
    python bench/build_space.py --executor ray --images 16
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def shared_setup(folder: Path, count: int):
    """Copies of the shared photos (cycled to ``count``), the FLAME test head, a flat init."""
    from flamekit.model import FlameModel, load_flame, load_landmark_embedding
    from flamekit.model.texture_space import TextureSpace, save_texture_space
    from flamekit.model.uv import load_uv_layout

    faces = SHARED / "faces"
    photos = sorted(faces.glob("ffhq_?????.png"))
    model = SHARED / "flame_test_model" / "flame2023_open_test.pkl"
    if not photos or not model.is_file():
        return None
    for i in range(count):  # distinct stems: build_space keys its work files by stem
        src = photos[i % len(photos)]
        stem = f"img_{i:03d}"
        shutil.copy(src, folder / f"{stem}.png")
        shutil.copy(faces / f"{src.stem}_lmk68.npy", folder / f"{stem}_lmk68.npy")
        shutil.copy(faces / f"{src.stem}_skin.png", folder / f"{stem}_skin.png")
    data = load_flame(model)
    layout = load_uv_layout(SHARED / "flame_topology" / "head_template_mesh.obj")
    data.uvs, data.uv_faces = layout.uvs_numpy(), layout.uv_faces_numpy()
    embedding = load_landmark_embedding(SHARED / "flame_topology" / "landmark_embedding.npz")
    head = FlameModel(data, embedding)
    size = 256
    mean = torch.tensor([0.62, 0.45, 0.38]).view(3, 1, 1).expand(3, size, size).clone()
    comp = torch.ones(1, 3, size, size) / math.sqrt(3 * size * size)
    space = TextureSpace(
        mean,
        comp,
        torch.tensor([0.1 * math.sqrt(3 * size * size)]),
        torch.from_numpy(data.uvs),
        torch.from_numpy(data.uv_faces),
    )
    return head, save_texture_space(space, folder / "init_space.npz"), "shared photos, FLAME test"


def synthetic_setup(folder: Path, count: int):
    """Renders of the demo head at 256 px with stored landmarks and skin masks."""
    from PIL import Image

    from flamekit.assets.demo_head import demo_head
    from flamekit.model import FlameModel
    from flamekit.model.texture_space import TextureSpace, save_texture_space
    from flamekit.render import OrthographicCamera, Renderer, clip_to_pixels

    demo = demo_head(256)
    head = FlameModel(demo.data, demo.landmarks)
    gen = torch.Generator().manual_seed(0)
    albedo = torch.from_numpy(demo.texture).permute(2, 0, 1)[None].float().repeat(count, 1, 1, 1)
    albedo = (albedo * (0.85 + 0.3 * torch.rand(count, 3, 1, 1, generator=gen))).clamp(0, 1)
    pose = torch.zeros(count, 3)
    pose[:, 1] = 0.6 * (torch.rand(count, generator=gen) - 0.5)
    with torch.no_grad():
        out = head(identity=0.5 * torch.randn(count, 5, generator=gen), global_pose=pose)
        camera = OrthographicCamera(
            scale=torch.full((count, 1), 4.5), translation=torch.zeros(count, 2)
        )
        uvs, uv_faces = torch.from_numpy(demo.data.uvs), torch.from_numpy(demo.data.uv_faces)
        renderer = Renderer(head.faces, uvs, uv_faces, (256, 256))
        light = torch.zeros(count, 9, 3)
        light[:, 0] = 3.0
        rendered = renderer(out.vertices, albedo, light, camera)
        lmk = clip_to_pixels(camera.to_clip(out.landmarks), (256, 256)) - 0.5
    image = rendered.image + 0.4 * (1 - rendered.mask)
    for i in range(count):
        stem = f"img_{i:03d}"
        pixels = (image[i].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{stem}.png")
        mask = (rendered.mask[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(mask).save(folder / f"{stem}_skin.png")
        np.save(folder / f"{stem}_lmk68.npy", lmk[i].numpy().astype(np.float32))
    space = TextureSpace(
        torch.from_numpy(demo.texture).permute(2, 0, 1).float(),
        torch.ones(1, 3, 256, 256) / math.sqrt(3 * 256 * 256),
        torch.tensor([4.0]),
        uvs,
        uv_faces,
    )
    return head, save_texture_space(space, folder / "init_space.npz"), "synthetic demo head"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--texture-size", type=int, default=256)
    parser.add_argument("--executor", default="local", choices=["local", "ray"])
    parser.add_argument("--synthetic", action="store_true", help="ignore the shared photos")
    args = parser.parse_args()

    from flamekit.texture.build import build_config, build_space

    config = build_config([f"device={args.device}"])  # build-space's default schedule
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setup = None if args.synthetic else shared_setup(folder, args.images)
        head, init, source = setup or synthetic_setup(folder, args.images)
        began = time.perf_counter()
        report = build_space(
            [folder],  # a folder: side files (_skin, _lmk68) are skipped
            str(init),
            folder / "space.npz",
            num_components=min(8, args.images - 1),
            config=config,
            model=head,
            landmarks=folder,
            masks=folder,
            texture_size=args.texture_size,
            batch_size=args.batch_size,
            device=args.device,
            progress=True,
            executor=args.executor,
        )
        total = time.perf_counter() - began
    seconds = report.seconds["fit"] + report.seconds["unwrap"]
    done = report.done["fit"]
    per_minute = 60.0 * done / seconds if seconds else float("nan")
    result = {
        "photos": source,
        "device": args.device,
        "executor": args.executor,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "render_size": config.render_size,
        "iterations": sum(s.iterations for s in config.stages),
        "texture_size": args.texture_size,
        "batch_size": args.batch_size,
        "images": args.images,
        "fitted": done,
        "failures": len(report.failures),
        "fit_seconds": report.seconds["fit"],
        "unwrap_seconds": report.seconds["unwrap"],
        "images_per_minute": per_minute,
        "build_seconds_total": total,
    }
    print(json.dumps(result, indent=2))
    print(f"fit + unwrap: {per_minute:.2f} images/min on {args.device} ({source})")
    out = ROOT / "bench" / "results" / f"build-space-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
