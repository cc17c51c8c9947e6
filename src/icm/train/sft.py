"""Instruction tuning on TRL's SFTTrainer and PEFT: an image-text-to-text model becomes an ICM-Assistant.

The data is conversational ``messages`` + ``images`` records (see :mod:`icm.train.data` for the
forms read: an ``icm data`` directory, a JSONL or Parquet file, a ``datasets`` directory). Images
are loaded and capped in the collator, so nothing is preprocessed up front; the loss covers the
assistant's tokens only, found by rendering the chat template up to each assistant turn (this
works with any template, with or without TRL's ``{% generation %}`` markers). The output
directory loads as ``--backend transformers:DIR``.

torch, transformers, trl and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm.backends.scoring import common_prefix_length
from icm.errors import ModelError
from icm.train.card import TrainResult, write_model_card
from icm.train.config import Method, MixSource, TrainConfig
from icm.train.data import TrainingData, TrainingDataError, image_bytes, load_training_data
from icm.train.precision import resolve_precision

#: Module names of vision towers and projectors (across architectures) and of output heads: LoRA
#: leaves them alone, and full fine-tuning freezes the vision towers.
VISION_MODULES = ("vision_tower", "vision_model", "visual")
NOT_ADAPTED = (*VISION_MODULES, "multi_modal_projector", "connector", "lm_head")
IGNORE_INDEX = -100
#: Processor outputs that run along the token axis, cut together with ``input_ids``.
PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids", "labels")
ADAPTER_DIR = "adapter"  # where --merge keeps the adapter, beside the merged model


class TrainError(ModelError):
    """A training run that cannot start or finish (bad data, model, output directory ...)."""


# --- data ---------------------------------------------------------------------------------------


def load_data(path: Path, role: str = "training data") -> TrainingData:
    """The records of ``path`` (any form :mod:`icm.train.data` reads), with at least one to train on."""
    try:
        data = load_training_data(path)
    except TrainingDataError as exc:
        raise TrainError(f"{role}: {exc}") from exc
    if not data.train:
        raise TrainError(f"{role} {path} has no records to train on")
    return data


def load_mix_source(source: MixSource) -> list[dict[str, Any]]:
    """A general instruction set: the training records of any data ``--data`` takes."""
    return load_data(source.path, "mix source").train


def mix_records(
    records: list[dict[str, Any]], mixes: list[tuple[list[dict[str, Any]], float]], seed: int
) -> list[dict[str, Any]]:
    """The moderation records plus ``round(ratio * len(records))`` of each general set, shuffled.

    A general set smaller than its share is repeated (each pass in a new random order).
    """
    rng = random.Random(seed)
    mixed = list(records)
    for general, ratio in mixes:
        wanted = round(ratio * len(records))
        drawn: list[dict[str, Any]] = []
        while len(drawn) < wanted:
            drawn.extend(rng.sample(general, len(general)))
        mixed.extend(drawn[:wanted])
    rng.shuffle(mixed)
    return mixed


# --- collation ----------------------------------------------------------------------------------


@dataclass
class ConversationCollator:
    """Loads and caps the images, chat-formats, tokenizes, and masks everything but the assistant.

    The assistant's tokens of turn i are those between the conversation rendered up to turn i with
    a generation prompt and the conversation rendered through turn i (compared token by token with
    the full sequence, so a merge across the boundary cannot shift the mask).
    """

    processor: Any
    max_length: int | None = None
    max_image_side: int = 1024

    def _image(self, path: str) -> Any:
        from PIL import Image

        from icm.media import MediaError, MediaLimits, load_image

        data = image_bytes(path)
        source = "an image stored in the training data" if data is not None else path
        try:
            decoded = load_image(source, data, limits=MediaLimits(max_frames=1, max_side=self.max_image_side))
        except MediaError as exc:
            raise TrainError(f"training image {source}: {exc.message}") from exc
        return Image.fromarray(decoded.frames[0])

    def _render(self, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
        return str(
            self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        )

    def _ids(self, text: str, images: list[Any]) -> list[int]:
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt")
        return [int(t) for t in encoded["input_ids"][0]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        images = [[self._image(p) for p in example["images"]] for example in examples]
        texts = [self._render(example["messages"]) for example in examples]
        flat = [image for group in images for image in group]
        batch = self.processor(
            text=texts, images=flat or None, padding=True, padding_side="right", return_tensors="pt"
        )
        labels = batch["input_ids"].clone().fill_(IGNORE_INDEX)
        for row, (example, frames) in enumerate(zip(examples, images, strict=True)):
            full = [int(t) for t in batch["input_ids"][row][batch["attention_mask"][row].bool()]]
            for start, end in self.assistant_spans(example["messages"], frames, full):
                labels[row, start:end] = batch["input_ids"][row, start:end]
        batch["labels"] = labels
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            for key in PER_TOKEN:
                if key in batch:
                    batch[key] = batch[key][:, : self.max_length]
        return dict(batch)

    def assistant_spans(
        self, messages: list[dict[str, Any]], frames: list[Any], full: list[int]
    ) -> list[tuple[int, int]]:
        """[start, end) token spans of the assistant turns within ``full``."""
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = messages[:i]
            shown = sum(p["type"] == "image" for m in before for p in m["content"])
            start = common_prefix_length([self._ids(self._render(before, True), frames[:shown]), full])
            if i == len(messages) - 1:
                end = len(full)
            else:
                through = messages[: i + 1]
                shown = sum(p["type"] == "image" for m in through for p in m["content"])
                end = common_prefix_length([self._ids(self._render(through), frames[:shown]), full])
            if end > start:
                spans.append((start, end))
        return spans


# --- model --------------------------------------------------------------------------------------


def lora_targets(model: Any) -> str:
    """A regular expression over module names: every linear layer of the language model.

    The vision tower, the projector and the output head are left out, whatever the architecture
    calls its projections (``q_proj`` ... ``down_proj`` for Llama/Qwen, ``qkv_proj`` for Phi ...).
    This is what LLaVA's own LoRA recipe adapts.
    """
    import re

    import torch

    leaves = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not set(name.split(".")) & set(NOT_ADAPTED):
            leaves.add(name.rsplit(".", 1)[-1])
    if not leaves:
        raise TrainError("no linear layers found outside the vision tower; set lora.target_modules")
    excluded = "|".join(NOT_ADAPTED)
    names = "|".join(re.escape(leaf) for leaf in sorted(leaves))
    return rf"^(?!.*\b(?:{excluded})\b).*\.(?:{names})$"


def _dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_model(config: TrainConfig, model_path: str, precision: str) -> Any:
    """The base model, 4-bit quantized for QLoRA, with the vision tower frozen for full tuning."""
    import torch
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": _dtype(precision)}
    if config.method is Method.qlora:
        if not torch.cuda.is_available():
            raise TrainError("qlora needs a CUDA GPU (bitsandbytes 4-bit); use --method lora on a CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    try:
        model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
    except ImportError as exc:
        raise TrainError(f"loading {model_path} needs {exc.name!r}: pip install 'icm-assistant[train]'") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise TrainError(f"cannot load a vision-language model from {model_path}: {exc}") from exc
    if config.method is Method.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.method is Method.full and config.freeze_vision:
        for name, parameter in model.named_parameters():
            if set(name.split(".")) & set(VISION_MODULES):
                parameter.requires_grad_(False)
    return model


def peft_config(config: TrainConfig, model: Any) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules or lora_targets(model),
        modules_to_save=config.lora.modules_to_save or None,
        task_type="CAUSAL_LM",
    )


# --- the run ------------------------------------------------------------------------------------


def latest_checkpoint(output: Path) -> Path | None:
    checkpoints = [p for p in output.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(checkpoints, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _resolve(config: TrainConfig) -> tuple[str, Path, Path]:
    if config.model is None or config.data is None or config.output is None:
        missing = [n for n in ("model", "data", "output") if getattr(config, n) is None]
        raise TrainError(f"the training config needs {', '.join(missing)} (flags --model, --data, --out)")
    model = Path(config.model).expanduser()
    if not model.is_dir():
        raise TrainError(f"no model directory at {config.model}")
    return str(model.resolve()), config.data, config.output


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run one instruction-tuning job; write the adapter (or model), processor and model card.

    With ``resume`` the newest ``checkpoint-N`` in the output directory is continued (optimizer,
    scheduler, data order and step count included).
    """
    model_path, data, output = _resolve(config)
    precision = resolve_precision(config.precision)  # before anything loads: a wrong recipe fails at once
    checkpoint = latest_checkpoint(output) if output.exists() else None
    if resume and checkpoint is None:
        raise TrainError(f"nothing to resume: {output} holds no checkpoint-N directory")
    if not resume and output.exists() and any(output.iterdir()):
        raise TrainError(f"{output} is not empty; add --resume to continue its run or choose a new --out")

    loaded = load_data(data)
    train_records, eval_records = loaded.train, loaded.validation
    moderation_samples = len(train_records)
    mixes = [(load_mix_source(m), m.ratio) for m in config.mix]
    train_records = mix_records(train_records, mixes, config.seed)

    from datasets import Dataset
    from transformers import AutoProcessor
    from trl import SFTConfig, SFTTrainer

    processor = AutoProcessor.from_pretrained(model_path)
    model = load_model(config, model_path, precision)
    has_eval = bool(eval_records)
    eval_steps = config.eval_steps or config.save_steps
    import torch

    arguments: dict[str, Any] = dict(
        output_dir=str(output),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        eval_on_start=has_eval,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        seed=config.seed,
        dataloader_num_workers=config.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        max_length=None,  # the collator cuts at config.max_length
        dataset_kwargs={"skip_prepare_dataset": True},
        report_to="none",
    )
    args = SFTConfig(**{**arguments, **config.trainer})  # the config's trainer: section wins
    collator = ConversationCollator(processor, config.max_length, config.max_image_side)
    trainer = SFTTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=Dataset.from_list(train_records),
        eval_dataset=Dataset.from_list(eval_records) if has_eval else None,
        processing_class=processor,
        peft_config=peft_config(config, model) if config.method is not Method.full else None,
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if resume and checkpoint else None)
    seconds = time.perf_counter() - started

    merged = config.merge and config.method is not Method.full
    adapter_dir = output / ADAPTER_DIR if merged else output
    trainer.save_model(str(adapter_dir))
    processor.save_pretrained(str(output))
    if merged:
        merge_adapter(model_path, adapter_dir, output, precision)
    history = trainer.state.log_history
    losses = [float(h["loss"]) for h in history if "loss" in h]
    eval_losses = [float(h["eval_loss"]) for h in history if "eval_loss" in h]
    runtime = next((h for h in reversed(history) if "train_samples_per_second" in h), {})
    result = TrainResult(
        output=str(output),
        method=config.method.value,
        steps=int(trainer.state.global_step),
        initial_loss=losses[0] if losses else None,
        final_loss=losses[-1] if losses else None,
        initial_eval_loss=eval_losses[0] if eval_losses else None,
        final_eval_loss=eval_losses[-1] if len(eval_losses) > 1 else None,
        train_samples=len(train_records),
        validation_samples=len(eval_records),
        seconds=round(seconds, 2),
        samples_per_second=runtime.get("train_samples_per_second"),
        merged=merged,
        resumed_from=str(checkpoint) if resume and checkpoint else None,
        losses=[round(x, 4) for x in losses if math.isfinite(x)],
    )
    write_model_card(output, config, result, model_path, loaded, moderation_samples)
    return result


def merge_adapter(model_path: str, adapter_dir: Path, output: Path, precision: str) -> None:
    """Fold the adapter into a fresh, unquantized copy of the base model and save it to ``output``."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(model_path, dtype=_dtype(precision))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(output))
