"""Training speed and memory of `icm train` (TRL SFTTrainer + PEFT) on a tiny random LLaVA.

    python benchmarks/train_step.py [--steps 20] [--batch-size 4] [--method lora|full] [--hidden 32 --layers 2]

Runs the library's own training path (icm.train.sft.train: collator, chat template, masks, LoRA)
on verdict samples made from scikit-image photos, and prints one JSON line: samples/s and seconds
per optimizer step over the whole training loop (data loading and collation included, model
loading and saving excluded), and the peak memory (process RSS, model loading included; CUDA
peak allocation on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builder the tests use

from backends.tiny_vlm import save_tiny_llava  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "horse", "moon")


def make_dataset(directory: Path, side: int) -> Path:
    from PIL import Image
    from skimage import data

    from icm.datagen.dataset import write_dataset
    from icm.datagen.sample import Sample, SampleMeta
    from icm.policy.load import load_policy
    from icm.prompts import render

    policy = load_policy("icm-r1")
    (directory / "images").mkdir(parents=True)
    samples = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        image.thumbnail((side, side))
        image.save(directory / "images" / f"{name}.png")
        for rule in policy.rules:
            meta = SampleMeta(kind="verdict", image_id=name, policy=policy.id, rule_id=rule.id, split="train")
            prompt = render("verdict", policy=policy, rule=rule, facts=[])
            samples.append(Sample.single_turn(prompt, "No", meta, image=f"images/{name}.png"))
    write_dataset(samples, directory)
    return directory


def run(args: argparse.Namespace, tmp: Path, steps: int) -> dict[str, Any]:
    from icm.train.config import TrainConfig
    from icm.train.sft import train

    config = TrainConfig(
        model=str(tmp / "model"),
        data=tmp / "data",
        output=tmp / f"out-{steps}",
        method=args.method,
        lora={"r": args.lora_r, "alpha": 2 * args.lora_r},
        max_steps=steps,
        batch_size=args.batch_size,
        gradient_accumulation=1,
        save_steps=10_000,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    result = train(config)
    return result.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=32, help="language model width of the random LLaVA")
    parser.add_argument("--layers", type=int, default=2, help="language model depth of the random LLaVA")
    parser.add_argument("--image-side", type=int, default=336)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        save_tiny_llava(tmp / "model", layers=args.layers, hidden=args.hidden)
        make_dataset(tmp / "data", args.image_side)
        # Redirect the trainer's log lines: stdout carries the result only.
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            full = run(args, tmp, args.steps)
        finally:
            sys.stdout = stdout
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "model": f"random LLaVA, LM hidden {args.hidden} x {args.layers} layers, CLIP 8px",
        "method": args.method,
        "batch_size": args.batch_size,
        "steps": full["steps"],
        "samples_per_second": full["samples_per_second"],
        "seconds_per_step": round(full["seconds"] / full["steps"], 4),
        "initial_loss": round(full["initial_loss"], 4),
        "final_loss": round(full["final_loss"], 4),
        "peak_rss_mib": round(peak_rss),
    }
    if torch.cuda.is_available():
        report["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
