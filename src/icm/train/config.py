"""The training configuration: typed, loadable from YAML, overridable from the command line.

Defaults follow the ICM-Assistant paper's LLaVA recipe: LoRA r=128, alpha=256 at lr 2e-4, or full
fine-tuning at lr 2e-5, one epoch. Nothing here imports torch.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from icm.errors import InputError
from icm.validation import read_yaml_mapping, validate_as

#: Learning rates of the paper, by method.
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}


class ConfigError(InputError):
    """A training configuration that cannot be read or is invalid."""


class Method(StrEnum):
    lora = "lora"
    qlora = "qlora"
    full = "full"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    r: int = Field(128, ge=1, description="LoRA rank (the paper: 128).")
    alpha: int = Field(256, ge=1, description="LoRA alpha (the paper: 256).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: str | list[str] | None = Field(
        None,
        description="Modules that get adapters: a list of names, a regular expression over full module "
        "names, or 'all-linear'. Default: the language model's attention and MLP projections, chosen "
        "per architecture (see icm.train.sft.lora_targets).",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Modules trained in full next to the adapter and saved with it, e.g. "
        "[multi_modal_projector] as LLaVA's own LoRA recipe does.",
    )


class MixSource(_Strict):
    """A general instruction set mixed into the moderation data (the paper's "mixed" strategy)."""

    path: Path = Field(
        description="Training data in any form `data` takes; its training records are mixed in."
    )
    ratio: float = Field(
        gt=0.0, description="General samples per moderation sample: 1.0 adds as many as the moderation set has."
    )

    @classmethod
    def parse(cls, text: str) -> MixSource:
        """``DIR:RATIO`` as given to ``--mix``."""
        path, sep, ratio = text.rpartition(":")
        if not sep or not path:
            raise ConfigError(f"--mix takes DIR:RATIO (e.g. llava-instruct:0.5), not {text!r}")
        try:
            return cls(path=Path(path), ratio=float(ratio))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"--mix {text!r}: the ratio must be a number above 0") from exc


class TrainConfig(_Strict):
    """Everything one `icm train` run needs. Save it as YAML, pass it with --config, override with flags."""

    model: str | None = Field(None, description="Base model directory (any image-text-to-text model).")
    data: Path | None = Field(
        None,
        description="Training data: a directory written by `icm data`, a JSONL or Parquet file, or a "
        "`datasets` directory (save_to_disk), of TRL's messages + images records (image paths relative "
        "to the file).",
    )
    output: Path | None = Field(
        None, description="Output directory: adapter or model, processor, model card, checkpoints."
    )
    method: Method = Field(Method.lora, description="lora, qlora (4-bit base, needs CUDA and bitsandbytes) or full.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float | None = Field(
        None, gt=0.0, description="Peak learning rate; default by method (lora/qlora 2e-4, full 2e-5)."
    )
    epochs: float = Field(1.0, gt=0.0, description="Passes over the training set (the paper: 1).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(4, ge=1, description="Samples per device per step.")
    gradient_accumulation: int = Field(4, ge=1, description="Steps whose gradients are summed before an update.")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    scheduler: str = Field("cosine", description="Learning-rate schedule (a transformers scheduler name).")
    weight_decay: float = Field(0.0, ge=0.0)
    max_length: int | None = Field(
        2048, ge=16, description="Longest tokenized sample (image tokens included); longer ones are cut at the end."
    )
    max_image_side: int = Field(
        1024, ge=16, description="Images are scaled down to this longest side before the processor sees them."
    )
    freeze_vision: bool = Field(
        True, description="Full fine-tuning: keep the vision tower frozen (LLaVA trains projector and LLM)."
    )
    mix: list[MixSource] = Field(default_factory=list, description="General instruction sets to mix in.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on the validation split every N steps (default: at every save)."
    )
    save_steps: int = Field(500, ge=1, description="Write a checkpoint every N steps.")
    save_total_limit: int | None = Field(2, ge=1, description="Keep only the newest N checkpoints.")
    logging_steps: int = Field(1, ge=1, description="Log the training loss every N steps.")
    gradient_checkpointing: bool = Field(True, description="Recompute activations: less memory, ~30% slower.")
    precision: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), bf16, fp16 or fp32.")
    seed: int = 0
    merge: bool = Field(False, description="Fold the LoRA adapter into the base weights and save a full model.")
    dataloader_workers: int = Field(0, ge=0, description="Processes that load images and tokenize.")
    trainer: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra SFTConfig / TrainingArguments fields, passed through unchanged "
        "(e.g. deepspeed: ds_zero3.json, report_to: [wandb]).",
    )

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError("precision is auto, bf16, fp16 or fp32")
        return value

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.method.value]

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with the given fields replaced; ``None`` values (flags not given) are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return validate_as(TrainConfig, {**self.model_dump(), **given}, "options", "training config", ConfigError,
                           root="config")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        data = read_yaml_mapping(path, "the training config", ConfigError, shape="a training config is a YAML mapping")
        return validate_as(cls, data, str(path), "training config", ConfigError, root="config")
