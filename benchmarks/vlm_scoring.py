"""Rule scoring throughput of the transformers backend: shared prefix vs K independent passes.

For K = 1, 4, 16 rules per image, the same images are judged (``explain=none``: scoring only)
with ``share_prefix=True`` (the image and policy prefix encoded once, its KV cache reused by one
batched pass over the K rule suffixes) and ``share_prefix=False`` (K full forward passes). The two
alternate round after round so that load from other processes weighs on both alike.

    python benchmarks/vlm_scoring.py                      # the tiny test LLaVA (hidden 32)
    python benchmarks/vlm_scoring.py --image-size 48      # 576 image tokens, as LLaVA-1.5
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builder the tests use

from backends.tiny_vlm import save_tiny_llava  # noqa: E402

from icm.backends.transformers import TransformersBackend  # noqa: E402
from icm.media import DecodedImage, load_image  # noqa: E402
from icm.policy.load import load_policy  # noqa: E402
from icm.policy.schema import Policy  # noqa: E402


def policy_with(k: int) -> Policy:
    """A policy of K distinct rules, taken from the built-in policies (repeated with new ids)."""
    rules = [r for name in ("icm-r1", "general") for r in load_policy(name).rules]
    chosen = [rules[i % len(rules)].model_copy(update={"id": f"rule-{i}"}) for i in range(k)]
    return Policy(id=f"bench-{k}", rules=chosen)


def run(backend: TransformersBackend, images: list[DecodedImage], policy: Policy) -> float:
    start = time.perf_counter()
    for image in images:
        backend.judge(image, policy)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32, help="language model hidden size")
    parser.add_argument("--layers", type=int, default=2, help="language model layers")
    parser.add_argument("--image-size", type=int, default=8, help="pixels; (size/2)^2 tokens")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    images = [load_image(examples[i % len(examples)]) for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_llava(
            Path(tmp), hidden=args.hidden, layers=args.layers, image_size=args.image_size
        )
        shared = TransformersBackend(str(model_dir), explain="none", share_prefix=True)
        alone = TransformersBackend(str(model_dir), explain="none", share_prefix=False)
        params = sum(p.numel() for p in shared.model.parameters())
        print(f"# {platform.machine()}, {torch.get_num_threads()} torch threads, "
              f"torch {torch.__version__}, Python {platform.python_version()}; "
              f"tiny LLaVA hidden={args.hidden} layers={args.layers} image={args.image_size}px "
              f"({params:,} parameters); "
              f"{args.images} images x {args.rounds} rounds")
        print("| K rules | shared rules/s | shared images/s | independent rules/s "
              "| independent images/s | speed-up |")
        print("|---|---|---|---|---|---|")
        for k in (1, 4, 16):
            policy = policy_with(k)
            run(shared, images[:1], policy)  # warm-up
            run(alone, images[:1], policy)
            t_shared = t_alone = 0.0
            for _ in range(args.rounds):
                t_shared += run(shared, images, policy)
                t_alone += run(alone, images, policy)
            n = args.images * args.rounds
            print(f"| {k} | {n * k / t_shared:.1f} | {n / t_shared:.2f} | {n * k / t_alone:.1f} "
                  f"| {n / t_alone:.2f} | {t_alone / t_shared:.2f}x |")


if __name__ == "__main__":
    main()
