"""Rule scoring throughput of the transformers backend: shared prefix vs K independent passes,
and several images per forward vs one.

For K = 1, 4, 16 rules per image, the same images are judged (``explain=none``: scoring only)
with ``share_prefix=True`` (each image processed once, its image and policy prefix run once, the K
rule suffixes packed into a few rows over the prefix's KV cache) and ``share_prefix=False`` (K full
forward passes, the image processed for each). The modes alternate round after round so that load
from other processes weighs on all alike. Printed beside them: the shared prefix P and mean rule
suffix S in tokens, and the ceiling K(P+S)/(P+KS) that the token counts allow. **batched** judges
the round's images in one ``judge_batch`` call with ``image_batch`` = the number of images (their
prefixes in one forward, their suffixes in the next), against the shared mode's one image per call.

    python benchmarks/vlm_scoring.py --threads 1                      # the tiny test LLaVA (hidden 32)
    python benchmarks/vlm_scoring.py --threads 1 --image-size 48 --hidden 256 --layers 4  # 576 image tokens
    python benchmarks/vlm_scoring.py ... --json                       # one JSON object instead of a table
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builder the tests use

from backends.tiny_vlm import save_tiny_llava  # noqa: E402

from icm.backends.packing import Questions  # noqa: E402
from icm.backends.transformers import TransformersBackend  # noqa: E402
from icm.media import DecodedImage, load_image  # noqa: E402
from icm.policy.load import load_policy  # noqa: E402
from icm.policy.schema import Policy  # noqa: E402


def policy_with(k: int) -> Policy:
    """A policy of K distinct rules, taken from the built-in policies (repeated with new ids)."""
    rules = [r for name in ("icm-r1", "general") for r in load_policy(name).rules]
    chosen = [rules[i % len(rules)].model_copy(update={"id": f"rule-{i}"}) for i in range(k)]
    return Policy(id=f"bench-{k}", rules=chosen)


def one_by_one(backend: TransformersBackend, images: list[DecodedImage], policy: Policy) -> float:
    start = time.perf_counter()
    for image in images:
        backend.judge(image, policy)
    return time.perf_counter() - start


def batched(backend: TransformersBackend, images: list[DecodedImage], policy: Policy) -> float:
    start = time.perf_counter()
    for outcome in backend.judge_batch(images, policy):
        if isinstance(outcome, Exception):
            raise outcome
    return time.perf_counter() - start


def token_counts(backend: TransformersBackend, image: DecodedImage, policy: Policy) -> tuple[int, float]:
    """(P, S): the shared prefix's length and the rule suffixes' mean length, in tokens."""
    prompts = backend.prompts.verdict_prompts(policy, [])
    questions = backend._encode_questions(backend._see(image), prompts)
    if isinstance(questions, Questions):
        return questions.prefix_length, sum(len(s) for s in questions.suffixes) / len(questions.suffixes)
    length = int(questions[0]["input_ids"].shape[1])
    return length, 0.0  # K = 1: the whole prompt is the prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32, help="language model hidden size")
    parser.add_argument("--layers", type=int, default=2, help="language model layers")
    parser.add_argument("--image-size", type=int, default=8, help="pixels; (size/2)^2 tokens")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rules", default="1,4,16", help="the K values, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    images = [load_image(examples[i % len(examples)]) for i in range(args.images)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_tiny_llava(
            Path(tmp), hidden=args.hidden, layers=args.layers, image_size=args.image_size
        )
        shared = TransformersBackend(str(model_dir), explain="none", share_prefix=True, image_batch=1)
        together = TransformersBackend(str(model_dir), explain="none", share_prefix=True,
                                       image_batch=args.images)
        alone = TransformersBackend(str(model_dir), explain="none", share_prefix=False)
        params = sum(p.numel() for p in shared.model.parameters())
        setup = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__, "python": platform.python_version(),
            "model": {"hidden": args.hidden, "layers": args.layers, "image_px": args.image_size,
                      "image_tokens": (args.image_size // 2) ** 2, "parameters": params},
            "images": args.images, "rounds": args.rounds,
        }
        for k in (int(v) for v in args.rules.split(",")):
            policy = policy_with(k)
            p_tokens, s_tokens = token_counts(shared, images[0], policy)
            ceiling = k * (p_tokens + s_tokens) / (p_tokens + k * s_tokens)
            one_by_one(shared, images[:1], policy)  # warm-up
            one_by_one(alone, images[:1], policy)
            batched(together, images[:2], policy)
            t_shared = t_alone = t_batched = 0.0
            for _ in range(args.rounds):
                t_shared += one_by_one(shared, images, policy)
                t_alone += one_by_one(alone, images, policy)
                t_batched += batched(together, images, policy)
            n = args.images * args.rounds
            speed_up = t_alone / t_shared
            rows.append({
                "K": k, "P": p_tokens, "S": round(s_tokens, 1), "ceiling": round(ceiling, 2),
                "independent_images_per_s": round(n / t_alone, 3),
                "shared_images_per_s": round(n / t_shared, 3),
                "batched_images_per_s": round(n / t_batched, 3),
                "speed_up": round(speed_up, 2), "of_ceiling": round(speed_up / ceiling, 3),
                "batched_vs_shared": round(t_shared / t_batched, 2),
            })
    if args.json:
        print(json.dumps({"setup": setup, "results": rows}, indent=2))
        return
    print(f"# {setup['machine']}, torch {setup['torch']}, Python {setup['python']}; tiny LLaVA "
          f"hidden={args.hidden} layers={args.layers} image={args.image_size}px ({params:,} parameters); "
          f"{args.images} images x {args.rounds} rounds")
    print("| K | P | S | ceiling | independent img/s | shared img/s | speed-up | of ceiling "
          f"| {args.images} images per forward img/s | vs one |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['K']} | {r['P']} | {r['S']} | {r['ceiling']}x | {r['independent_images_per_s']} "
              f"| {r['shared_images_per_s']} | {r['speed_up']}x | {r['of_ceiling']:.0%} "
              f"| {r['batched_images_per_s']} | {r['batched_vs_shared']}x |")


if __name__ == "__main__":
    main()
