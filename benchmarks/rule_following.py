"""Does data -> train -> moderate -> eval give a model that follows the rule text it is given?

A world where the truth is known exactly (:mod:`rule_world`: shapes drawn with Pillow, rule sets
over their attributes), run end to end through icm's own commands:

1. ``icm data generate`` (its Python API, :class:`icm.datagen.pipeline.Pipeline`, with the world's
   explainer and question writer as the two model stages) writes the instruction data: verdict
   samples under every rule set of the family, explanations, Q-A pairs;
2. a small LLaVA is built from a config (:func:`rule_world.save_llava`) and its vision tower
   taught the world's attributes (:func:`rule_world.pretrain_vision_tower`, this world's stand-in
   for a pretrained CLIP); ``icm train`` then fine-tunes the projector and the language model,
   the vision tower frozen, as LLaVA-1.5 is fine-tuned;
3. ``icm moderate --backend transformers:OUT`` judges the test images under each rule set;
4. ``icm eval`` scores them (accuracy and ROC-AUC over every (image, rule) pair of the rule set).

Steps 2-4 run the typer commands themselves (in this process, through typer's CliRunner). Before
judging, the prompt of training samples is compared, token for token through the chat template,
with the prompt the transformers backend encodes for the same image and rule; any difference stops
the run.

    python benchmarks/rule_following.py            # the full run (about 10 minutes on 2 cores)
    python benchmarks/rule_following.py --quick    # the whole table, smaller (about 6 minutes)
    python benchmarks/rule_following.py --ci       # what the CI test asserts (about 2 minutes)
    python benchmarks/rule_following.py --json     # one JSON object: {"rows": [...], "seed", "machine", ...}
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import yaml  # noqa: E402
from rule_world import (  # noqa: E402
    HELD_OUT,
    IMAGE_SIZE,
    RULE_SETS,
    Scene,
    World,
    WorldExplainer,
    WorldQuestionWriter,
    make_world,
    pretrain_vision_tower,
    save_llava,
    vocabulary,
    write_images,
    write_policies,
)

#: the kinds of samples trained on: the verdicts and the Q-A pairs about the attributes. The
#: explanations are generated but left out: the JSON one's prompt carries the answer's JSON Schema
#: (about 560 tokens), the free-text one runs to about 160, and one such sample pads a whole batch
#: to its length, several times the cost of the verdicts a CPU run is about.
TRAINED_KINDS = ("verdict", "yes_no", "what", "how", "multiple_choice")
ONE_SET = "kids"
#: the rule sets of the --ci run
CI_SETS = ("adults", "kids")


@dataclass(frozen=True)
class Scale:
    train: int
    validation: int
    test: int
    steps: int  # optimizer steps of the all-sets model
    one_set_steps: int
    batch_size: int
    learning_rate: float
    hidden: int
    layers: int
    #: steps of teaching the vision tower the world's attributes before the LLaVA is trained
    vision_steps: int = 600
    #: the rule sets the all-sets model is trained on (and judged under)
    rule_sets: tuple[str, ...] = tuple(RULE_SETS)
    #: the untrained and the one-set models, and the held-out rule set, judged too
    baselines: bool = True
    kinds: tuple[str, ...] = TRAINED_KINDS


FULL = Scale(train=1200, validation=120, test=300, steps=2500, one_set_steps=500, batch_size=16,
             learning_rate=1.5e-3, hidden=64, layers=2, vision_steps=1200)
QUICK = Scale(train=600, validation=60, test=120, steps=1500, one_set_steps=300, batch_size=16,
              learning_rate=2e-3, hidden=64, layers=2)
#: what tests/train/test_rule_following.py asserts, and no more: the all-sets model trained on two
#: rule sets that allow and forbid the same background (adults' light-only, kids' text-light), on
#: the verdict samples only, judged with and without the rule text; no untrained, one-set or
#: held-out rows (about 90 s of CPU time)
CI = Scale(train=240, validation=24, test=60, steps=400, one_set_steps=0, batch_size=16, learning_rate=3e-3,
           hidden=64, layers=2, rule_sets=CI_SETS, baselines=False, kinds=("verdict",))


class BenchmarkError(RuntimeError):
    """A step of the loop failed, or the prompts trained on differ from the prompts asked."""


def _invoke(args: list[str]) -> str:
    """One icm command, run through its typer app; its stdout, or BenchmarkError with its output."""
    from typer.testing import CliRunner

    from icm.cli.app import app

    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        detail = result.output[-3000:]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            detail += "".join(traceback.format_exception(result.exception))[-3000:]
        raise BenchmarkError(f"icm {' '.join(args[:2])} ... exited {result.exit_code}:\n{detail}")
    return result.stdout


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- 1. the world and its data ------------------------------------------------------------------


def write_manifest(scenes: list[Scene], images: dict[str, Path], path: Path) -> None:
    """The labelled images as an ``image,label`` manifest, paths relative to it: the data engine
    keys (and so splits) images by that path, the same in every work folder."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        for scene in scenes:
            writer.writerow([images[scene.image_id].relative_to(path.parent).as_posix(), scene.label])


def generate_data(world: World, images: dict[str, Path], policies: dict[str, Path], family: list[str],
                  out: Path, work: Path) -> dict[str, Any]:
    """``icm data generate`` (its Python API) for the train and validation images, with the
    world's explainer and question writer; the primary policy is the first of ``family``."""
    from icm.datagen.config import GenerateConfig
    from icm.datagen.pipeline import Pipeline
    from icm.lock import output_lock

    scenes = world.train + world.validation
    manifest = work / "labelled.csv"
    label_map = work / "label-map.yaml"
    if not manifest.exists():
        write_manifest(scenes, images, manifest)
        label_map.write_text(yaml.safe_dump({s.label: s.criteria() for s in scenes}), "utf-8")
    config = GenerateConfig(
        images=manifest, out=out, policy=str(policies[family[0]]), family=[str(policies[n]) for n in family],
        mllm=WorldExplainer.spec, llm=WorldQuestionWriter.spec, label_map=label_map,
        validation=len(world.validation) / len(scenes),
    )
    with output_lock(out):
        report = Pipeline(config, explainer=WorldExplainer(scenes, images), llm=WorldQuestionWriter(scenes)).run()
    if not report["ok"]:
        raise BenchmarkError(f"icm data generate produced nothing usable: {report['problems']}")
    return report


def kind_of(row: dict[str, Any]) -> str:
    meta = row["meta"]
    if meta["kind"] == "explanation":
        return f"explanation:{meta['extra'].get('format', 'json')}"
    return str(meta["kind"])


def trained_file(dataset: Path, kinds: tuple[str, ...] = TRAINED_KINDS) -> Path:
    """The dataset's training records of the trained kinds, as a JSONL file beside its train.jsonl
    (so that its relative image paths hold)."""
    from icm.jsonl import read_jsonl

    target = dataset / "trained.jsonl"
    rows = [row for _, row in read_jsonl(dataset / "train.jsonl") if kind_of(row) in kinds]
    with target.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


# --- 2. the model -------------------------------------------------------------------------------


def build_base(datasets: list[Path], policies: dict[str, Path], out: Path, scale: Scale, seed: int) -> Path:
    """The LLaVA before ``icm train``, its vocabulary every word of the data and of every question
    asked (its vision tower is taught the attributes next)."""
    from icm.jsonl import read_jsonl
    from icm.policy.load import load_policy
    from icm.prompts.moderation import verdict_prompts

    texts = []
    for dataset in datasets:
        for split in ("train.jsonl", "validation.jsonl"):
            for _, row in read_jsonl(dataset / split):
                texts += [part.get("text") or "" for m in row["messages"] for part in m["content"]]
    for path in policies.values():
        texts += verdict_prompts(load_policy(path))
    return save_llava(out, vocabulary(texts), seed=seed, hidden=scale.hidden, layers=scale.layers)


def train(base: Path, data: Path, out: Path, scale: Scale, steps: int, seed: int, work: Path) -> dict[str, Any]:
    """``icm train``: full fine-tuning of the projector and the language model (randomly
    initialised), the vision tower frozen."""
    config = work / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump({
        "method": "full", "freeze_vision": True, "max_steps": steps, "batch_size": scale.batch_size,
        "gradient_accumulation": 1, "learning_rate": scale.learning_rate, "warmup_ratio": 0.05,
        "scheduler": "cosine", "weight_decay": 0.0, "gradient_checkpointing": False, "precision": "fp32",
        "max_image_side": IMAGE_SIZE, "save_steps": 1_000_000, "save_total_limit": 1, "logging_steps": 25,
        "seed": seed,
    }), "utf-8")
    stdout = _invoke(["train", "--model", str(base), "--data", str(data), "--out", str(out),
                      "--config", str(config), "--json"])
    return dict(json.loads(stdout.strip().splitlines()[-1]))


# --- 3. the prompts trained on are the prompts asked -------------------------------------------


def check_prompts(model: Path, dataset: Path, policies: dict[str, Path], limit: int, seed: int) -> int:
    """For ``limit`` verdict samples of ``dataset``: the tokens before the answer, as the training
    collator builds them, equal the tokens the transformers backend (what ``icm moderate
    --backend transformers:MODEL`` loads) encodes for the same image, policy and rule."""
    from icm.backends.base import load_backend
    from icm.jsonl import read_jsonl
    from icm.media import load_image
    from icm.policy.load import load_policy
    from icm.train.data import load_training_data
    from icm.train.sft import IGNORE_INDEX, ConversationCollator

    loaded = load_training_data(dataset / "train.jsonl")
    rows = [row for _, row in read_jsonl(dataset / "train.jsonl")]
    verdicts = [(rec, row["meta"]) for rec, row in zip(loaded.train, rows, strict=True)
                if row["meta"]["kind"] == "verdict"]
    picked = random.Random(seed).sample(verdicts, min(limit, len(verdicts)))
    backend = load_backend(f"transformers:{model}", explain="none")
    collator = ConversationCollator(backend.processor, max_image_side=IMAGE_SIZE)  # type: ignore[attr-defined]
    by_id = {load_policy(p).id: load_policy(p) for p in policies.values()}
    try:
        for record, meta in picked:
            batch = collator([record])
            labels = batch["labels"][0].tolist()
            start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
            trained = batch["input_ids"][0][:start].tolist()
            policy = by_id[meta["policy"]]
            frames = backend._see(load_image(record["images"][0]))  # type: ignore[attr-defined]
            questions = backend._questions(policy, [])  # type: ignore[attr-defined]
            encoded = backend._encode_questions(frames, questions)  # type: ignore[attr-defined]
            index = [r.id for r in policy.rules].index(meta["rule_id"])
            asked = encoded.prefix["input_ids"][0].tolist() + encoded.suffixes[index].tolist()
            if asked != trained:
                tokenizer = backend.processor.tokenizer  # type: ignore[attr-defined]
                raise BenchmarkError(
                    f"the prompt trained on for {meta['image_id']} under {policy.id}/{meta['rule_id']} differs "
                    f"from the prompt icm moderate asks:\ntrained: {tokenizer.decode(trained)}\n"
                    f"asked:   {tokenizer.decode(asked)}"
                )
    finally:
        backend.close()
    return len(picked)


# --- 4. judge and score -------------------------------------------------------------------------


def write_labels(scenes: list[Scene], images: dict[str, Path], policy_path: Path, path: Path) -> float:
    """The true verdicts of every (test image, rule) pair; returns chance: the accuracy of
    answering each rule with its more frequent verdict."""
    from icm.policy.categories import policy_labels
    from icm.policy.load import load_policy

    policy = load_policy(policy_path)
    violations = dict.fromkeys((r.id for r in policy.rules), 0)
    with path.open("w", encoding="utf-8") as handle:
        for scene in scenes:
            for rule_id, violated in policy_labels(policy, scene.criteria()).items():
                violations[rule_id] += violated
                row = {"image": str(images[scene.image_id]), "rule_id": rule_id,
                       "label": "violates" if violated else "complies"}
                handle.write(json.dumps(row) + "\n")
    return sum(max(n, len(scenes) - n) for n in violations.values()) / (len(scenes) * len(violations))


def judge_and_score(model: Path, test_dir: Path, policy: Path, labels: Path, out: Path) -> dict[str, Any]:
    """``icm moderate`` the test images under ``policy``, then ``icm eval`` them against ``labels``."""
    _invoke(["moderate", str(test_dir), "--policy", str(policy), "--backend", f"transformers:{model}",
             "--explain", "none", "--out", str(out), "--overwrite", "--quiet"])
    evaluation = json.loads(_invoke(["eval", "--predictions", str(out), "--labels", str(labels), "--json",
                                     "--bootstrap", "0"]))
    return {"accuracy": evaluation["accuracy"], "roc_auc": evaluation.get("roc_auc"),
            "coverage": evaluation.get("coverage"), "n": evaluation.get("n"), "per_rule": per_rule(out, labels)}


def per_rule(predictions: Path, labels: Path) -> dict[str, float]:
    """Accuracy of each rule's verdicts (rule id -> accuracy over the test images)."""
    truth = {}
    for line in labels.read_text("utf-8").splitlines():
        row = json.loads(line)
        truth[(row["image"], row["rule_id"])] = row["label"]
    right: dict[str, list[bool]] = {}
    for line in predictions.read_text("utf-8").splitlines():
        result = json.loads(line)
        for verdict in result["verdicts"]:
            key = (result["image"], verdict["rule_id"])
            if key in truth:
                right.setdefault(verdict["rule_id"], []).append(verdict["verdict"] == truth[key])
    return {rule: round(sum(hits) / len(hits), 3) for rule, hits in right.items()}


# --- the run ------------------------------------------------------------------------------------


def machine() -> str:
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, load {load:.1f}")


def run(scale: Scale, seed: int, work: Path) -> dict[str, Any]:
    import torch

    torch.manual_seed(seed)
    started = time.perf_counter()
    world = make_world(seed, scale.train, scale.validation, scale.test)
    images = write_images(world.train + world.validation, work / "images")
    test_images = write_images(world.test, work / "test")
    policies = write_policies(work / "policies")
    trained_sets = list(scale.rule_sets)
    judged_sets = [*trained_sets, *HELD_OUT] if scale.baselines else trained_sets
    log(f"world: {len(world.train)} train, {len(world.validation)} validation, {len(world.test)} test images")

    datasets = {"all-sets": work / "data-all"}
    if scale.baselines:
        datasets[f"one-set:{ONE_SET}"] = work / "data-one"
    reports = {name: _reuse(data / "report.json")
               or generate_data(world, images, policies, trained_sets if name == "all-sets" else [ONE_SET], data, work)
               for name, data in datasets.items()}
    log("icm data: " + "; ".join(f"{n} {r['samples']} {r['kinds']}" for n, r in reports.items()))

    base = work / "untrained"
    taught = base / "vision_pretraining.json"
    if not (base / "config.json").exists():
        build_base(list(datasets.values()), policies, base, scale, seed)
        taught.write_text(json.dumps(pretrain_vision_tower(base, images, world.train, world.validation,
                                                           steps=scale.vision_steps, seed=seed)), "utf-8")
    elif not taught.exists():
        raise BenchmarkError(f"{base} holds a model whose vision tower was not taught the attributes "
                             "(an older run's): start again in a new --work folder")
    vision = json.loads(taught.read_text("utf-8"))
    log("vision tower taught the attributes; validation accuracy: "
        + " ".join(f"{c} {a:.2f}" for c, a in vision.items()))
    models = {"untrained": base}
    training: dict[str, Any] = {}
    for name, data in datasets.items():
        steps = scale.steps if name == "all-sets" else scale.one_set_steps
        out = work / name.replace(":", "-")
        log(f"icm train {name}: {steps} steps ...")
        summary = _reuse(out / "train_summary.json")  # icm train's own record of the run, its result inside
        training[name] = summary["result"] if summary else train(base, trained_file(data, scale.kinds), out,
                                                                 scale, steps, seed, work)
        log(f"  {training[name]['steps']} steps, loss {training[name]['initial_loss']:.3f} -> "
            f"{training[name]['final_loss']:.3f}, {training[name]['seconds']:.0f} s")
        models[name] = out
    checked = sum(check_prompts(models[name], data, policies, 40, seed) for name, data in datasets.items())
    log(f"prompts: {checked} training samples asked token for token as trained")

    labels, chance = {}, {}
    for name in judged_sets:
        labels[name] = work / f"labels-{name}.jsonl"
        chance[name] = round(write_labels(world.test, test_images, policies[name], labels[name]), 4)
    rows = []
    judged_models = ("untrained", f"one-set:{ONE_SET}", "all-sets") if scale.baselines else ("all-sets",)
    plan = [(m, s, s) for m in judged_models for s in judged_sets]
    plan += [("all-sets-no-rule-text", s, f"{s}-withheld") for s in judged_sets]
    for model, rule_set, policy in plan:
        weights = models["all-sets" if model == "all-sets-no-rule-text" else model]
        trained_on = {"all-sets": trained_sets, "all-sets-no-rule-text": trained_sets,
                      f"one-set:{ONE_SET}": [ONE_SET]}.get(model, [])
        scores = judge_and_score(weights, work / "test", policies[policy], labels[rule_set],
                                 work / f"results-{model.replace(':', '-')}-{policy}.jsonl")
        rows.append({"model": model, "rule_set": rule_set, "held_out": rule_set not in trained_on, **scores,
                     "chance": chance[rule_set]})
        log(f"{model:<24} {rule_set:<10} accuracy {scores['accuracy']:.3f}  ROC-AUC {_fmt(scores['roc_auc'])}  "
            + " ".join(f"{rule} {accuracy:.2f}" for rule, accuracy in scores["per_rule"].items()))
    return {
        "seed": seed, "machine": machine(), "scale": {**scale.__dict__, "rule_sets": trained_sets,
                                                      "kinds": list(scale.kinds)},
        "seconds": round(time.perf_counter() - started),
        "trained_kinds": list(scale.kinds), "prompts_checked": checked, "vision_pretraining": vision,
        "samples": {name: report["samples"] for name, report in reports.items()},
        "training": {k: {f: v.get(f) for f in ("steps", "initial_loss", "final_loss", "seconds", "train_samples")}
                     for k, v in training.items()},
        "rows": rows,
    }


def _reuse(path: Path) -> dict[str, Any] | None:
    """What an earlier run in the same --work wrote (``--resume``), else None."""
    return dict(json.loads(path.read_text("utf-8"))) if RESUME and path.exists() else None


RESUME = False


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(result: dict[str, Any]) -> str:
    lines = [f"rule following on the shapes world (seed {result['seed']}; {result['machine']}; "
             f"{result['seconds']} s)", "",
             "| model | rule set | held out | accuracy | ROC-AUC | chance |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['rule_set']} | {'yes' if row['held_out'] else 'no'} | "
                     f"{row['accuracy']:.3f} | {_fmt(row['roc_auc'])} | {row['chance']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="the whole table, smaller: fewer images and steps")
    preset.add_argument("--ci", action="store_true",
                        help="what the CI test asserts: the all-sets model on CI_SETS, with and without the rule text")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="with --work: reuse the data and trained models an earlier run left there")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine more threads cost more than they give)")
    parser.add_argument("--work", type=Path, default=None, help="keep the run's files here (default: a temp dir)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps of the all-sets model")
    parser.add_argument("--one-set-steps", type=int, default=None, help="optimizer steps of the one-set model")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of both models")
    parser.add_argument("--hidden", type=int, default=None, help="width of the language model")
    parser.add_argument("--layers", type=int, default=None, help="layers of the language model")
    parser.add_argument("--vision-steps", type=int, default=None,
                        help="steps of teaching the vision tower the world's attributes")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="icm-rules-"))
    parser_resume = args.resume
    if args.work is not None and work.exists() and any(work.iterdir()) and not parser_resume:
        parser.error(f"{work} is not empty (add --resume to reuse its data and trained models)")
    global RESUME
    RESUME = parser_resume
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    try:
        scale = CI if args.ci else QUICK if args.quick else FULL
        overrides = {"steps": args.steps, "one_set_steps": args.one_set_steps, "learning_rate": args.lr,
                     "hidden": args.hidden, "layers": args.layers, "vision_steps": args.vision_steps}
        scale = replace(scale, **{k: v for k, v in overrides.items() if v is not None})
        result = run(scale, args.seed, work)
    except BenchmarkError as exc:
        print(f"rule_following: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
