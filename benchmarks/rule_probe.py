"""Can the rule-following model's vision tower alone learn an attribute of the shapes world?

The untrained LLaVA of :func:`rule_world.save_llava` (the benchmark's image processor and vision
tower), its vision tower trained together with a linear head on the mean of its patch outputs, one
binary attribute at a time, and scored on held-out images: a diagnostic of whether the image (and
each attribute's pixels) reaches the model in a learnable form.

    python benchmarks/rule_probe.py [--steps 300] [--lr 1e-3] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rule_world import Scene, make_world, save_llava, vocabulary  # noqa: E402

ATTRIBUTES: dict[str, Callable[[Scene], bool]] = {
    "red-shape": lambda s: any(x.colour == "red" for x in s.shapes),
    "star": lambda s: s.stars > 0,
    "text": lambda s: s.word is not None,
    "dark-background": lambda s: s.dark,
}


def probe(steps: int, lr: float, seed: int, train: int = 600, test: int = 200) -> dict[str, tuple[float, float]]:
    """Attribute -> (test accuracy, accuracy of always answering the more frequent value)."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    world = make_world(seed, train, 0, test)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        save_llava(Path(folder), vocabulary([]), seed=seed)
        processor = AutoProcessor.from_pretrained(folder)
        pixels = {split: processor.image_processor([s.draw() for s in scenes], return_tensors="pt")["pixel_values"]
                  for split, scenes in (("train", world.train), ("test", world.test))}
        for name, holds in ATTRIBUTES.items():
            torch.manual_seed(seed)
            truth = {split: torch.tensor([holds(s) for s in scenes]).float()
                     for split, scenes in (("train", world.train), ("test", world.test))}
            tower = LlavaForConditionalGeneration.from_pretrained(folder).model.vision_tower
            head = torch.nn.Linear(tower.config.hidden_size, 1)
            optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=lr)

            def logits(batch: torch.Tensor, tower: torch.nn.Module = tower, head: torch.nn.Module = head
                       ) -> torch.Tensor:
                return head(tower(pixel_values=batch).last_hidden_state[:, 1:].mean(1)).squeeze(-1)

            for _ in range(steps):
                picked = torch.randint(0, train, (16,))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(pixels["train"][picked]),
                                                                            truth["train"][picked])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                accuracy = ((logits(pixels["test"]) > 0).float() == truth["test"]).float().mean().item()
            share = truth["test"].mean().item()
            results[name] = (round(accuracy, 3), round(max(share, 1 - share), 3))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for name, (accuracy, majority) in probe(args.steps, args.lr, args.seed).items():
        print(f"{name:<16} test accuracy {accuracy:.3f}  (majority {majority:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
