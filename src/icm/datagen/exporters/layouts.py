"""Other training layouts of the same samples: LLaVA's JSON and the ShareGPT form."""

from __future__ import annotations

import json
from pathlib import Path

from icm.datagen.dataset import SPLITS, read_samples
from icm.datagen.sample import Sample

_ROLES = {"user": "human", "assistant": "gpt", "system": "system"}


def _turns(sample: Sample) -> list[dict[str, str]]:
    turns = []
    for message in sample.messages:
        images = sum(p.type == "image" for p in message.content)
        value = "<image>\n" * images + message.text
        turns.append({"from": _ROLES[message.role], "value": value})
    return turns


def to_llava(sample: Sample, index: int) -> dict[str, object]:
    """LLaVA's layout: one image per conversation, ``<image>`` in the first human turn."""
    row: dict[str, object] = {"id": f"{sample.meta.image_id}-{index}", "conversations": _turns(sample)}
    if sample.images:
        row["image"] = sample.images[0]
    return row


def to_sharegpt(sample: Sample) -> dict[str, object]:
    """The ShareGPT form that LLaMA-Factory and others read: conversations plus an images list."""
    return {"conversations": _turns(sample), "images": list(sample.images)}


def write_layouts(directory: Path) -> list[Path]:
    """Write ``llava/{split}.json`` and ``sharegpt/{split}.json`` beside the JSONL splits."""
    written = []
    for split in SPLITS:
        if not (directory / f"{split}.jsonl").exists():
            continue
        samples = read_samples(directory, split)
        for layout, rows in (
            ("llava", [to_llava(s, i) for i, s in enumerate(samples)]),
            ("sharegpt", [to_sharegpt(s) for s in samples]),
        ):
            path = directory / layout / f"{split}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), "utf-8")
            written.append(path)
    return written
