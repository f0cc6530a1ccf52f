"""Benchmark the photometric fit: the default schedule (rigid 200 + full 800 iterations at
224x224) on one image and on a batch, timing the optimization only (not detection).

Uses the FLAME-format test model and real photos with stored landmarks and masks from
../shared when present, else the built-in demo head on the same photos (the shared photos
are required). Prints a table and writes bench/results/fit-<device>.json.

    python bench/fit.py                      # CPU, 2 threads, batch 1
    python bench/fit.py --device cuda --batches 1,32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def load_head():
    from flamekit.model import FlameModel, load_flame, load_landmark_embedding
    from flamekit.model.uv import load_uv_layout

    model = SHARED / "flame_test_model" / "flame2023_open_test.pkl"
    if model.is_file():
        data = load_flame(model)
        layout = load_uv_layout(SHARED / "flame_topology" / "head_template_mesh.obj")
        data.uvs, data.uv_faces = layout.uvs_numpy(), layout.uv_faces_numpy()
        embedding = load_landmark_embedding(SHARED / "flame_topology" / "landmark_embedding.npz")
        return FlameModel(data, embedding), "FLAME test model (shared)"
    from flamekit.assets.demo_head import demo_head

    demo = demo_head()
    return FlameModel(demo.data, demo.landmarks), "demo head"


def prepared_batch(config, batch: int):
    from flamekit.fitting.pipeline import prepare_image
    from flamekit.plugins import landmark_detector, segmenter

    faces = SHARED / "faces"
    photos = sorted(faces.glob("ffhq_?????.png"))
    if not photos:
        sys.exit(f"needs the photos in {faces}")
    detector = landmark_detector("file", path=faces)
    masks = segmenter("file", path=faces)
    items = [prepare_image(photos[i % len(photos)], config, detector, masks) for i in range(batch)]
    return (
        torch.stack([p.render_image for p in items]),
        torch.stack([p.render_landmarks for p in items]),
        torch.stack([p.render_mask for p in items]),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from flamekit.fitting.config import load_config
    from flamekit.fitting.fitter import Fitter

    config = load_config(None, [f"device={args.device}", *args.set])
    head, head_name = load_head()
    fitter = Fitter(head, config, device=args.device)
    rows = []
    print(f"model: {head_name}; device {args.device}; torch threads {torch.get_num_threads()}")
    print(f"{'batch':>6}{'iterations':>12}{'seconds':>10}{'s/image':>10}{'lmk px':>9}")
    for batch in [int(b) for b in args.batches.split(",")]:
        images, landmarks, masks = prepared_batch(config, batch)
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = fitter.fit(images, landmarks, masks)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        iterations = sum(log.iterations for log in result.logs)
        error = (result.landmarks2d.cpu() - landmarks).norm(dim=-1).mean().item()
        error_crop = error * config.crop_size / config.render_size
        rows.append(
            {
                "batch": batch,
                "iterations": iterations,
                "seconds": seconds,
                "seconds_per_image": seconds / batch,
                "landmark_error_render_px": error,
                "landmark_error_crop_px": error_crop,
            }
        )
        print(f"{batch:>6}{iterations:>12}{seconds:>10.2f}{seconds / batch:>10.2f}{error:>9.2f}")
    out = args.out or ROOT / "bench" / "results" / f"fit-{torch.device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "model": head_name,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "render_size": config.render_size,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
