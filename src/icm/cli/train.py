"""``icm train`` (instruction-tune a VLM) and ``icm calibrate`` (fit the local engine's thresholds)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from icm.cli import output
from icm.train.config import Method, TrainConfig


def _field_help(name: str, more: str = "") -> str:
    """A flag's help is its TrainConfig field's description and default: one text for the flag and
    the YAML key. (The flags default to None, "not given", so the config's default is named here.)"""
    field = TrainConfig.model_fields[name]
    default = field.default if isinstance(field.default, (str, int, float)) else None
    shown = "" if default is None or isinstance(default, bool) else f"Default: {default}."
    return " ".join(part for part in (field.description, more, shown) if part)

if TYPE_CHECKING:
    from icm.train.calibrate import CalibrationResult
    from icm.train.sft import TrainResult


def train(
    model: str | None = typer.Option(None, "--model", "-m", help=_field_help("model")),
    data: Path | None = typer.Option(None, "--data", "-d", help=_field_help("data")),
    out: Path | None = typer.Option(None, "--out", "-o", help=_field_help("output")),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Training config YAML; the flags here override its fields."
    ),
    method: Method | None = typer.Option(None, "--method", help=_field_help("method")),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help=_field_help("max_steps")),
    epochs: float | None = typer.Option(None, "--epochs", help=_field_help("epochs")),
    learning_rate: float | None = typer.Option(None, "--lr", help=_field_help("learning_rate")),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help=_field_help("batch_size")),
    mix: list[str] | None = typer.Option(
        None, "--mix", help=_field_help("mix", "Each as DIR:RATIO (general samples per moderation sample); repeatable.")
    ),
    merge: bool = typer.Option(False, "--merge", help=_field_help("merge")),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary line on stdout."),
) -> None:
    """Instruction-tune a vision-language model on moderation data (TRL SFTTrainer + PEFT).

    The output directory loads as `--backend transformers:OUT`. Several GPUs or DeepSpeed: run the
    same command under `accelerate launch --config_file ACCELERATE.yaml $(which icm) train ...`.

    Example (MODEL_DIR: a model directory on disk, e.g. llava-hf/llava-1.5-7b-hf):

      icm data import-icm tests/fixtures/icm_release/raw --out data/icm-r1

      icm train --model MODEL_DIR --data data/icm-r1 --out runs/icm-r1 --json
    """
    from icm.train.config import ConfigError, MixSource, TrainConfig

    stderr = Console(stderr=True, soft_wrap=True)
    try:
        base = TrainConfig.from_yaml(config) if config is not None else TrainConfig()
        settings = base.with_overrides(
            model=model,
            data=data,
            output=out,
            method=method,
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            mix=[MixSource.parse(m) for m in mix] if mix else None,
            merge=True if merge else None,
        )
    except ConfigError as exc:
        stderr.print(output.error(exc))
        raise typer.Exit(2) from exc
    try:
        from icm.train.sft import train as run_training
    except ImportError as exc:
        stderr.print(output.error(f"training needs {exc.name!r}: pip install 'icm-assistant[train]'"))
        raise typer.Exit(2) from exc
    # Trainer logs go to stderr: stdout carries only the result.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_training(settings, resume=resume)
    if json_out:
        print(json.dumps(result.as_dict()), flush=True)
        return
    Console().print(training_table(result))
    stderr.print(Text(f"use it: icm moderate IMAGES --backend transformers:{result.output}"))


def training_table(result: TrainResult) -> Table:
    table = output.table(title="training", show_header=False)
    for key in ("output", "method", "steps", "initial_loss", "final_loss", "initial_eval_loss",
                "final_eval_loss", "train_samples", "seconds", "merged"):
        value = getattr(result, key)
        output.add_row(table, key, f"{value:.4f}" if isinstance(value, float) else value)
    return table


def calibrate(
    policy: str = typer.Option(..., "--policy", "-p", help="Built-in policy name or YAML file to calibrate."),
    labels: Path = typer.Option(
        ..., "--labels", "-l", help='JSONL of {"image", "rule_id", "label": "violates"|"complies"}; '
        "image paths relative to the file."
    ),
    backend: str = typer.Option("local", "--backend", "-b", help="Only local: the engine whose thresholds are fitted."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the calibrated policy (a new version) here."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary line on stdout."),
) -> None:
    """Fit the local engine's signal thresholds on labelled images; write a new policy version.

    Reports accuracy and expected calibration error (ECE) before and after. Use the result with
    `icm moderate --policy OUT`; every result names the calibrated version. When no threshold
    changes, nothing is written.

    Example: icm calibrate --policy general --labels examples/labels.jsonl --out general.calibrated.yaml
    """
    from icm.backends.base import split_spec
    from icm.policy.load import load_policy
    from icm.train.calibrate import calibrate as fit
    from icm.train.calibrate import policy_yaml, read_labels

    stderr = Console(stderr=True, soft_wrap=True)
    if split_spec(backend) != ("local", None):
        stderr.print(output.error(
            f"calibrate fits the local engine's thresholds; got --backend {backend}. "
            "Model backends are tuned by `icm train`."
        ))
        raise typer.Exit(2)
    result = fit(load_policy(policy), read_labels(labels))
    # A policy no threshold of which moved is not a new version: nothing to write.
    written = out if out is not None and result.changes else None
    if written is not None:
        written.write_text(policy_yaml(result), encoding="utf-8")
    if json_out:
        print(json.dumps({**result.as_dict(), "output": None if written is None else str(written)}), flush=True)
        return
    Console().print(calibration_table(result))
    for change in result.changes:
        stderr.print(Text(f"{change.rule_id}/{change.criterion_id}: {change.before} -> {change.after}"))
    if not result.changes:
        stderr.print(Text(
            "no threshold changed: the policy already fits these labels as well as its signals allow"
            + (f"; {out} not written" if out is not None else "")
        ))
    elif written is not None:
        stderr.print(Text(f"calibrated policy: {written} ({result.policy.id} v{result.policy.version})"))
    else:
        stderr.print(Text("add --out FILE to write the calibrated policy"))


def calibration_table(result: CalibrationResult) -> Table:
    title = f"calibration of {result.source} on {result.before.labels} labels"
    table = output.table("", "before", "after", title=title)
    for key in ("accuracy", "ece", "brier", "uncertain"):
        b, a = getattr(result.before, key), getattr(result.after, key)
        output.add_row(table, key, *("-" if v is None else f"{v:.4f}" if isinstance(v, float) else v for v in (b, a)))
    return table
