"""``icm train`` (instruction-tune a VLM) and ``icm calibrate`` (fit the local engine's thresholds)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from icm.train.config import Method


def train(
    model: str | None = typer.Option(None, "--model", "-m", help="Base model directory (image-text-to-text)."),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Directory written by `icm data`, or a TRL-format .jsonl / .parquet file or "
        "`datasets` directory (messages + images)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (adapter or model, card, checkpoints)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Training config YAML; the flags here override its fields."
    ),
    method: Method | None = typer.Option(None, "--method", help="lora (default), qlora or full."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
    epochs: float | None = typer.Option(None, "--epochs", help="Passes over the data (default 1)."),
    learning_rate: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default: 2e-4 for LoRA, 2e-5 for full)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Samples per device per step."),
    mix: list[str] | None = typer.Option(
        None, "--mix", help="Mix in a general instruction set: DIR:RATIO (general per moderation sample). Repeatable."
    ),
    merge: bool = typer.Option(False, "--merge", help="Fold the LoRA adapter into the base model's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON summary line on stdout."),
) -> None:
    """Instruction-tune a vision-language model on moderation data (TRL SFTTrainer + PEFT).

    The output directory loads as `--backend transformers:OUT`. Several GPUs or DeepSpeed: run the
    same command under `accelerate launch --config_file ACCELERATE.yaml $(which icm) train ...`.

    Example:

      icm train --model llava-1.5-7b-hf --data icm-data/ --out icm-assistant/ --json
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
        stderr.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        from icm.train.sft import TrainError
        from icm.train.sft import train as run_training
    except ImportError as exc:
        stderr.print(f"[red]error:[/red] training needs {exc.name!r}: pip install 'icm-assistant[train]'")
        raise typer.Exit(2) from exc
    try:
        # Trainer logs go to stderr: stdout carries only the result.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_training(settings, resume=resume)
    except TrainError as exc:
        stderr.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if json_out:
        print(json.dumps(result.as_dict()), flush=True)
        return
    table = Table(title="training", show_header=False)
    for key in ("output", "method", "steps", "initial_loss", "final_loss", "initial_eval_loss",
                "final_eval_loss", "train_samples", "seconds", "merged"):
        value = getattr(result, key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    stderr.print(f"use it: icm moderate IMAGES --backend transformers:{result.output}")


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
    `icm moderate --policy OUT`; every result names the calibrated version.
    """
    from icm.backends.base import BackendError, parse_spec
    from icm.policy.load import PolicyError, load_policy
    from icm.train.calibrate import CalibrationError, policy_yaml, read_labels
    from icm.train.calibrate import calibrate as fit

    stderr = Console(stderr=True, soft_wrap=True)
    if parse_spec(backend) != ("local", None):
        stderr.print(
            f"[red]error:[/red] calibrate fits the local engine's thresholds; got --backend {backend}. "
            "Model backends are tuned by `icm train`."
        )
        raise typer.Exit(2)
    try:
        result = fit(load_policy(policy), read_labels(labels))
    except (PolicyError, CalibrationError, BackendError) as exc:
        stderr.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if out is not None:
        out.write_text(policy_yaml(result), encoding="utf-8")
    if json_out:
        print(json.dumps({**result.as_dict(), "output": None if out is None else str(out)}), flush=True)
        return
    table = Table("", "before", "after", title=f"calibration of {result.source} on {result.before.labels} labels")
    for key in ("accuracy", "ece", "brier", "uncertain"):
        b, a = getattr(result.before, key), getattr(result.after, key)
        table.add_row(key, *("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in (b, a)))
    Console().print(table)
    for change in result.changes:
        stderr.print(f"{change.rule_id}/{change.criterion_id}: {change.before} -> {change.after}")
    if not result.changes:
        stderr.print("no threshold changed: the policy already fits these labels as well as its signals allow")
    if out is not None:
        stderr.print(f"calibrated policy: {out} ({result.policy.id} v{result.policy.version})")
    else:
        stderr.print("add --out FILE to write the calibrated policy")
