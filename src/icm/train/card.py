"""The model card written into every training output: what was trained, on what, how, and the result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icm.train.config import TrainConfig
    from icm.train.data import TrainingData

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


def _sha256(paths: list[Path]) -> str | None:
    """One digest over the files, in order (a split saved by `datasets` may span several)."""
    if not paths:
        return None
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_summary(data: TrainingData) -> dict[str, Any]:
    """Where the data came from, in what form, its files' hashes, and the policy versions its samples were
    made for (the manifest too, for a directory written by `icm data`)."""
    return {
        "path": str(data.source.resolve()),
        "form": data.form,
        "manifest": data.manifest,
        "sha256": {split: _sha256(data.files.get(split, [])) for split in ("train", "validation")},
        "policies": dict(data.policies),
    }


def write_model_card(
    output: Path,
    config: TrainConfig,
    result: TrainResult,
    model_path: str,
    data: TrainingData,
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
    manifest = "" if summary["manifest"] is None else (
        f"Manifest:\n\n```json\n{json.dumps(summary['manifest'], indent=2)}\n```\n"
    )
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
- dataset: `{summary["path"]}` ({summary["form"]})
- training split sha256: `{summary["sha256"]["train"]}`
- validation split sha256: `{summary["sha256"]["validation"] or "none"}`
- policies: {policies}
- moderation samples: {moderation_samples}; general instruction mix: {mixes}
- samples trained on per epoch: {result.train_samples}; validation samples: {result.validation_samples}

{manifest}
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
