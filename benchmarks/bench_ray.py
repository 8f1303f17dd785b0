"""``rsvg batch --ray`` throughput and overhead, and the cost of content-based input identity.

1. Tiles/s with a stub answer source that sleeps a fixed time per tile (as a GPU would): the
   single-process path, then Ray with 1 and 2 workers (local instance, 2 CPUs, small object store).
2. Ray's overhead per tile against the single-process path, with a stub that answers at once.
3. Content ids (size + BLAKE2b of a small file, or head/tail/samples of a big one) of a folder of
   10,000 small tiles: first pass (page cache dropped where allowed) and second pass.

    .venv/bin/python benchmarks/bench_ray.py [--tiles 64] [--sleep 0.05] [--id-files 10000]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
import batch_helpers
from batch_helpers import BlobGenerator, blob_image, write_geotiff

from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity, run_batch
from rsvg_desktop.engine.events import BatchFinished
from rsvg_desktop.engine.inputs import Query, content_id, expand_inputs

MODEL = ModelIdentity(model="stub", model_id="0" * 16, precision="fp32")


class SleepPerTile(BlobGenerator):
    """Blob answers, after sleeping ``per_tile`` seconds for each tile of the batch."""

    def __init__(self, per_tile: float) -> None:
        super().__init__()
        self.per_tile = per_tile

    def generate(self, requests, *, max_new_tokens, batch_size):  # type: ignore[no-untyped-def]
        time.sleep(self.per_tile * len(requests))
        return super().generate(requests, max_new_tokens=max_new_tokens, batch_size=batch_size)


def _config(folder: Path, out: Path, batch: int) -> BatchConfig:
    return BatchConfig(
        inputs=(str(folder),),
        queries=(Query("refer", "car"),),
        output=str(out),
        overwrite=True,
        tile_size=64,
        overlap=16,
        batch_size=batch,
        max_new_tokens=16,
    )


def _single(folder: Path, out: Path, per_tile: float, batch: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    events = list(run_batch(_config(folder, out, batch), SleepPerTile(per_tile), model=MODEL))
    s = events[-1].summary
    return s.tiles_done, time.perf_counter() - t0


def _ray(folder: Path, out: Path, per_tile: float, batch: int, workers: int) -> tuple[int, float, float]:
    """(tiles, seconds of the whole run, seconds after the workers were up)."""
    from rsvg_desktop.engine.ray_batch import RayOptions, WorkersProgress, run_ray_batch

    t0 = time.perf_counter()
    first = None
    summary = None
    for e in run_ray_batch(
        _config(folder, out, batch),
        functools.partial(SleepPerTile, per_tile),
        model=MODEL,
        options=RayOptions(workers=workers),
        device="cpu",
    ):
        if isinstance(e, WorkersProgress) and first is None:
            first = time.perf_counter()
        if isinstance(e, BatchFinished):
            summary = e.summary
    end = time.perf_counter()
    assert summary is not None
    return summary.tiles_done, end - t0, end - (first or t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=64, help="single-tile inputs (default 64)")
    ap.add_argument("--sleep", type=float, default=0.05, help="stub seconds per tile (default 0.05)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--id-files", type=int, default=10000, help="files for the content-id measurement (0: skip)"
    )
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before the first pass")
    ap.add_argument("--no-overhead", action="store_true", help="skip the instant-stub overhead runs")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        folder = work / "tiles"
        folder.mkdir()
        for i in range(args.tiles):
            write_geotiff(
                folder / f"t{i:05d}.tif", blob_image(64, 64, [(10, 10, 12)], seed=i), x0=5e5 + 40 * i
            )

        import ray
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(batch_helpers)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
        print(f"ray.init (local, 2 CPUs): {time.perf_counter() - t0:.1f} s")

        print(
            f"\n{args.tiles} one-tile inputs, stub sleeping {args.sleep * 1000:.0f} ms/tile, "
            f"batch {args.batch}"
        )
        n, s = _single(folder, work / "single.gpkg", args.sleep, args.batch)
        print(f"  single process : {n / s:6.2f} tiles/s ({s:.2f} s)")
        for w in (1, 2):
            n, total, steady = _ray(folder, work / f"ray{w}.gpkg", args.sleep, args.batch, w)
            print(
                f"  ray, {w} worker(s): {n / total:6.2f} tiles/s overall ({total:.2f} s, incl. actor start), "
                f"{(n - args.batch) / steady:6.2f} tiles/s after the first batch"
            )

        print(f"\noverhead per tile, stub answering at once, batch {args.batch}")
        n, s = _single(folder, work / "single0.gpkg", 0.0, args.batch)
        print(f"  single process : {1000 * s / n:6.2f} ms/tile")
        for w in (1, 2) if not args.no_overhead else ():
            n, total, steady = _ray(folder, work / f"ray0_{w}.gpkg", 0.0, args.batch, w)
            print(
                f"  ray, {w} worker(s): {1000 * total / n:6.2f} ms/tile ({total:.2f} s incl. actor start), "
                f"{1000 * steady / (n - args.batch):6.2f} ms/tile after the first batch"
            )
        ray.shutdown()

        if args.id_files <= 0:
            return
        ids = work / "ids"
        ids.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.id_files):
            sub = ids / f"r{i // 1000:02d}"
            sub.mkdir(exist_ok=True)
            (sub / f"t{i:05d}.png").write_bytes(rng.bytes(int(rng.integers(8_000, 60_000))))
        paths = expand_inputs([str(ids)])
        dropped = False
        if args.drop_caches:  # root only; affects the whole machine's page cache
            try:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("1\n")
                dropped = True
            except OSError:
                pass
        size = sum(os.path.getsize(p) for p in paths) / 1e6
        for label in ("first pass" + (" (page cache dropped)" if dropped else ""), "second pass"):
            t0 = time.perf_counter()
            for p in paths:
                content_id(p)
            s = time.perf_counter() - t0
            print(
                f"\ncontent ids of {len(paths)} tiles ({size:.0f} MB), {label}: {s:.2f} s, "
                f"{1e6 * s / len(paths):.0f} µs/file"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
