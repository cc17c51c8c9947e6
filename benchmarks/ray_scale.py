"""Ray's cost and gain: `icm moderate --engine ray` with 1 and 2 actors against the local path.

    python benchmarks/ray_scale.py --images 48 [--policy general] [--rounds 2]

Same process, same images (those of benchmarks/local_engine.py), a Ray instance started here
(``ray.init(num_cpus=N)``, this machine's cores). In each round, in turn:
  local-1    Moderator.run, --workers 1, from the files to a JSONL file (detectors warm)
  ray-1      RayModerator.run, 1 actor: listing, decode tasks, the actor, JSONL shards
  local-2    Moderator.run, --workers 2
  ray-2      RayModerator.run, 2 actors
A Ray run starts its actors and loads the backend in each: right before each Ray run, a run on one
image measures that fixed cost (``startup``), and ``steady`` images/s counts the rest:
(images - 1) / (seconds - startup). Ray's overhead per image is steady seconds per image minus the
local path's. Target: ray-1 steady >= 0.9x local-1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from local_engine import make_images
from report import machine, print_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--policy", default="general")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs Ray may use")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    import ray

    from icm import Moderator
    from icm.scale.ray import RayModerator, RayOptions, read_results

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    seconds: dict[str, float] = {}
    startup: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, args.images)
        local = {n: Moderator(args.policy, workers=n) for n in (1, 2)}
        for moderator in local.values():
            moderator.moderate(paths[0])  # load and warm the detectors
        on_ray = {n: RayModerator(args.policy, "local", RayOptions(actors=n, batch_size=args.batch_size,
                                                                   progress=False)) for n in (1, 2)}
        for round_ in range(args.rounds):
            for n in (1, 2):
                start = time.perf_counter()
                summary = local[n].run(paths, out=Path(tmp) / f"local-{n}-{round_}.jsonl")
                seconds[f"local-{n}"] = seconds.get(f"local-{n}", 0.0) + time.perf_counter() - start
                assert summary.judged == len(paths)
                start = time.perf_counter()  # the fixed cost of a run: actors started, backend loaded
                on_ray[n].run(paths[:1], Path(tmp) / f"startup-{n}-{round_}")
                startup[f"ray-{n}"] = startup.get(f"ray-{n}", 0.0) + time.perf_counter() - start
                out = Path(tmp) / f"ray-{n}-{round_}"
                start = time.perf_counter()
                run = on_ray[n].run(paths, out)
                seconds[f"ray-{n}"] = seconds.get(f"ray-{n}", 0.0) + time.perf_counter() - start
                assert run.summary.judged == len(paths) == len(list(read_results(out)))
    ray.shutdown()

    total = len(paths) * args.rounds
    rate = {k: total / v for k, v in seconds.items()}
    steady = {k: (total - args.rounds) / (v - startup[k]) for k, v in seconds.items() if k in startup}
    report = {
        "images": len(paths),
        "rounds": args.rounds,
        "policy": args.policy,
        "batch_size": args.batch_size,
        **{f"{k}_images_per_s": round(v, 2) for k, v in rate.items()},
        **{f"{k}_startup_s": round(v / args.rounds, 2) for k, v in startup.items()},
        **{f"{k}_steady_images_per_s": round(v, 2) for k, v in steady.items()},
        "ray-1_steady_vs_local-1": round(steady["ray-1"] / rate["local-1"], 3),
        "ray-2_steady_vs_local-2": round(steady["ray-2"] / rate["local-2"], 3),
        "ray_overhead_ms_per_image_1_actor": round(1000 * (1 / steady["ray-1"] - 1 / rate["local-1"]), 1),
        "machine": machine(),
    }
    print_report(report, args.json)


if __name__ == "__main__":
    main()
