"""Fixtures for training: a small verdict dataset of package photos (the tiny LLaVA is in the root conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The dataset's lesson: rule TAUGHT_YES is always violated, rule TAUGHT_NO never.
TAUGHT_YES, TAUGHT_NO = "nudity", "exposed-skin"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "horse", "moon")


def write_verdict_dataset(directory: Path, photos: tuple[str, ...] = PHOTOS) -> Path:
    """Yes/No verdict samples under icm-r1, two per photo, the last two photos for validation."""
    from helpers import sample_image

    from icm.datagen.dataset import write_dataset
    from icm.datagen.sample import Sample, SampleMeta
    from icm.policy.load import load_policy
    from icm.prompts import render

    policy = load_policy("icm-r1")
    (directory / "images").mkdir(parents=True)
    samples = []
    for index, name in enumerate(photos):
        image = sample_image(name).convert("RGB")
        image.thumbnail((96, 96))
        image.save(directory / "images" / f"{name}.png")
        split = "validation" if index >= len(photos) - 2 else "train"
        for rule_id, answer in ((TAUGHT_YES, "Yes"), (TAUGHT_NO, "No")):
            meta = SampleMeta(
                kind="verdict", image_id=name, policy=policy.id, policy_version=policy.version,
                rule_id=rule_id, label="violates" if answer == "Yes" else "complies", split=split,
            )
            prompt = render("verdict", policy=policy, rule=policy.rule(rule_id), facts=[])
            samples.append(Sample.single_turn(prompt, answer, meta, image=f"images/{name}.png"))
    write_dataset(samples, directory)
    return directory


@pytest.fixture(scope="session")
def verdict_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_verdict_dataset(tmp_path_factory.mktemp("verdict-data"))
