"""The model card written into every training output: what was trained, on what, how, and the result."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icm.datagen.dataset import MANIFEST, read_samples

if TYPE_CHECKING:
    from icm.train.config import TrainConfig

CONFIG_FILE = "train_config.yaml"
SUMMARY_FILE = "train_summary.json"


@dataclass
class TrainResult:
    """What a run did; ``icm train --json`` prints it as one line."""

    output: str
    method: str
    steps: int
    initial_loss: float | None
    final_loss: float | None
    initial_eval_loss: float | None = None
    final_eval_loss: float | None = None
    train_samples: int = 0
    validation_samples: int = 0
    seconds: float = 0.0
    samples_per_second: float | None = None
    merged: bool = False
    resumed_from: str | None = None
    losses: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sha256(path: Path) -> str | None:
    if not path.exists():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_summary(data: Path) -> dict[str, Any]:
    """The dataset's manifest, its files' hashes, and the policy versions its samples were made for."""
    manifest_path = data / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else None
    policies: Counter[str] = Counter()
    for sample in read_samples(data, "train"):
        if sample.meta.policy is not None:
            version = f" v{sample.meta.policy_version}" if sample.meta.policy_version is not None else ""
            policies[f"{sample.meta.policy}{version}"] += 1
    return {
        "path": str(data.resolve()),
        "manifest": manifest,
        "sha256": {split: _sha256(data / f"{split}.jsonl") for split in ("train", "validation")},
        "policies": dict(policies),
    }


def write_model_card(
    output: Path,
    config: TrainConfig,
    result: TrainResult,
    model_path: str,
    data: Path,
    moderation_samples: int,
) -> None:
    """README.md (for people), train_config.yaml (to rerun) and train_summary.json (for tools)."""
    summary = data_summary(data)
    (output / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
    record = {"base_model": model_path, "data": summary, "result": result.as_dict()}
    (output / SUMMARY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    policies = ", ".join(f"{k} ({n} samples)" for k, n in summary["policies"].items()) or "not recorded"
    mixes = "; ".join(f"{m.path} at {m.ratio:g} per moderation sample" for m in config.mix) or "none"
    kind = "merged model" if result.merged else ("LoRA adapter" if config.method.value != "full" else "model")
    losses = [
        ("training loss, first / last logged step", result.initial_loss, result.final_loss),
        ("validation loss, before / after training", result.initial_eval_loss, result.final_eval_loss),
    ]
    loss_rows = "\n".join(
        f"| {name} | {_fmt(a)} | {_fmt(b)} |" for name, a, b in losses if a is not None or b is not None
    )
    resumed = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    text = f"""---
base_model: {model_path}
library_name: {"peft" if kind == "LoRA adapter" else "transformers"}
tags: [icm, image-moderation, trl, sft]
---

# ICM-Assistant ({kind}, {config.method.value})

Instruction-tuned with `icm train` to judge images against written moderation rules and explain
its verdicts (the ICM-Assistant method).

Use it:

```bash
icm moderate IMAGES --policy POLICY --backend transformers:{output}
```

## Base model
`{model_path}`{f" (the adapter is in `{output / 'adapter'}`)" if result.merged else ""}

## Data
- dataset: `{summary["path"]}`
- train.jsonl sha256: `{summary["sha256"]["train"]}`
- validation.jsonl sha256: `{summary["sha256"]["validation"]}`
- policies: {policies}
- moderation samples: {moderation_samples}; general instruction mix: {mixes}
- samples trained on per epoch: {result.train_samples}; validation samples: {result.validation_samples}

Manifest:

```json
{json.dumps(summary["manifest"], indent=2)}
```

## Result
| | first | last |
|---|---|---|
{loss_rows}

{result.steps} optimizer steps in {result.seconds:.0f} s{resumed}.

## Configuration
Rerun with `icm train --config {CONFIG_FILE}` (in this directory):

```yaml
{config.to_yaml().rstrip()}
```
"""
    (output / "README.md").write_text(text, encoding="utf-8")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
