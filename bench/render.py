"""Benchmark: forward + backward of rasterize + interpolate + sh_shade on the FLAME mesh.

For every available backend and device, at several resolutions and batch sizes, it times
one training-like step (rasterize the mesh, interpolate normals and colours, SH-shade, sum,
backward) and reports the median over repeated runs after warm-up. Prints a table and
writes JSON (default bench/results/render-<device>.json).

    python bench/render.py                    # CPU, 2 threads, all configurations
    python bench/render.py --device cuda      # GPU

On the CPU it also measures the flamekit/torch ratio at 224x224 batch 1 by interleaved timing
(--ratio-rounds), which a shared machine's load changes disturb far less than two separate
medians taken minutes apart.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flamekit.render import get_backend, list_backends  # noqa: E402
from flamekit.render.camera import OrthographicCamera  # noqa: E402
from flamekit.render.geometry import vertex_normals  # noqa: E402

CONFIGS = [(224, 1), (224, 16), (256, 16), (512, 1), (512, 16)]


def load_mesh():
    """The FLAME topology from ../shared when present, else the procedural head at a
    similar triangle count."""
    path = ROOT.parent / "shared" / "data" / "flame_topology" / "head_template_mesh.obj"
    if path.is_file():
        from flamekit.io.obj import load_obj

        mesh = load_obj(path)
        return mesh.vertices - mesh.vertices.mean(0), mesh.faces, "FLAME topology"
    from flamekit.assets.procedural_head import procedural_head

    head = procedural_head(resolution=71)
    return head.vertices, head.faces, "procedural head"


def make_inputs(vertices, faces, batch, device):
    angles = torch.linspace(-30, 30, batch) * math.pi / 180
    c, s = torch.cos(angles), torch.sin(angles)
    zeros, ones = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([c, zeros, s, zeros, ones, zeros, -s, zeros, c], -1).reshape(batch, 3, 3)
    verts = vertices[None] @ rot.transpose(1, 2)
    extent = float((vertices.amax(0) - vertices.amin(0)).max())
    cam = OrthographicCamera(torch.full((batch,), 1.8 / extent), torch.zeros(batch, 2))
    pos = cam.to_clip(verts).contiguous()
    normals = vertex_normals(verts, faces)
    colours = torch.rand(batch, vertices.shape[0], 3, generator=torch.Generator().manual_seed(0))
    sh = torch.zeros(batch, 9, 3)
    sh[:, 0] = 3.0
    sh[:, 3] = 0.5
    tensors = [t.to(device) for t in (pos, normals, colours, sh)]
    return tensors, faces.to(torch.int32).to(device)


def step(backend, tensors, faces, resolution):
    pos, normals, colours, sh = [t.detach().requires_grad_(True) for t in tensors]
    rast = backend.rasterize(pos, faces, resolution)
    n = backend.interpolate(normals, rast, faces)
    albedo = backend.interpolate(colours, rast, faces)
    image = backend.sh_shade(albedo, n, sh)
    image.sum().backward()
    return pos.grad


def time_config(backend, tensors, faces, resolution, device, warmup, repeats):
    for _ in range(warmup):
        step(backend, tensors, faces, resolution)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(backend, tensors, faces, resolution)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step(backend, tensors, faces, resolution)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def interleaved_ratio(backends, tensors, faces, resolution, rounds, fast_per_round):
    """Speed ratio slow/fast from interleaved timing: each round times ``fast_per_round``
    steps of the fast backend and one of the slow one, back to back, so load changes on a
    shared machine hit both alike; returns the median over rounds of the per-round ratio and
    the quartiles. CPU only."""
    fast, slow = backends
    for backend in (fast, slow):
        step(backend, tensors, faces, resolution)
    ratios = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(fast_per_round):
            step(fast, tensors, faces, resolution)
        t1 = time.perf_counter()
        step(slow, tensors, faces, resolution)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / ((t1 - t0) / fast_per_round))
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q[0], q[2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    parser.add_argument("--backends", default="flamekit,torch")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--torch-repeats", type=int, default=3, help="repeats for the slow pure-PyTorch backend"
    )
    parser.add_argument(
        "--torch-max-pixels",
        type=int,
        default=224 * 224 * 16,
        help="skip the torch backend above this many pixels per step",
    )
    parser.add_argument(
        "--ratio-rounds",
        type=int,
        default=40,
        help="CPU: rounds of interleaved flamekit/torch timing at 224x224 batch 1 (0: skip)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vertices, faces, mesh_name = load_mesh()
    available = list_backends()
    rows = []
    print(
        f"mesh: {mesh_name}, {faces.shape[0]} triangles; device {device}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'backend':<10}{'size':>6}{'batch':>7}{'median ms':>12}{'min ms':>10}")
    for name in args.backends.split(","):
        if not available.get(name, (False, ""))[0]:
            print(f"{name:<10} unavailable: {available.get(name, (False, 'unknown'))[1][:60]}")
            continue
        backend = get_backend(name)
        for size, batch in CONFIGS:
            pixels = size * size * batch
            if name == "torch" and pixels > args.torch_max_pixels:
                continue
            tensors, tri = make_inputs(vertices, faces, batch, device)
            repeats = args.torch_repeats if name == "torch" else args.repeats
            warmup = 1 if name == "torch" else 5
            median, best = time_config(backend, tensors, tri, (size, size), device, warmup, repeats)
            rows.append(
                {
                    "backend": name,
                    "size": size,
                    "batch": batch,
                    "median_ms": round(median, 4),
                    "min_ms": round(best, 4),
                    "repeats": repeats,
                }
            )
            print(f"{name:<10}{size:>6}{batch:>7}{median:>12.3f}{best:>10.3f}")
    speedups = {}
    for row in rows:
        if row["backend"] != "flamekit":
            continue
        ref = next(
            (
                r
                for r in rows
                if r["backend"] == "torch"
                and r["size"] == row["size"]
                and r["batch"] == row["batch"]
            ),
            None,
        )
        if ref:
            speedups[f"{row['size']}x{row['size']} batch {row['batch']}"] = round(
                ref["median_ms"] / row["median_ms"], 1
            )
    for key, value in speedups.items():
        print(f"flamekit vs torch at {key}: {value}x faster")
    interleaved = None
    if (
        device.type == "cpu"
        and args.ratio_rounds > 1
        and {"flamekit", "torch"} <= {r["backend"] for r in rows}
    ):
        tensors, tri = make_inputs(vertices, faces, 1, device)
        pair = (get_backend("flamekit"), get_backend("torch"))
        median, low, high = interleaved_ratio(pair, tensors, tri, (224, 224), args.ratio_rounds, 10)
        interleaved = {
            "size": 224,
            "batch": 1,
            "rounds": args.ratio_rounds,
            "median": round(median, 2),
            "quartiles": [round(low, 2), round(high, 2)],
        }
        print(
            f"interleaved, 224x224 batch 1 ({args.ratio_rounds} rounds of 10 flamekit steps + "
            f"1 torch step): {median:.1f}x faster (quartiles {low:.1f}x-{high:.1f}x)"
        )
    result = {
        "benchmark": "rasterize + interpolate(normals, colours) + sh_shade, forward + backward",
        "mesh": mesh_name,
        "triangles": int(faces.shape[0]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
        "speedup_vs_torch": speedups,
        "speedup_vs_torch_interleaved": interleaved,
    }
    out = args.out or ROOT / "bench" / "results" / f"render-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
