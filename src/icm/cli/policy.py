"""``icm policy``: list, show and validate policies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from icm.cli import output
from icm.cli.extras import needs_extra
from icm.cli.review import IMAGE_DIR, KEEP_IMAGES, kept_store
from icm.cli.store import DB

if TYPE_CHECKING:
    from icm.policy import Policy
    from icm.policy.decompose import DecomposeReport

app = typer.Typer(help="List, show, validate and decompose moderation policies.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.command("list")
def list_policies() -> None:
    """The built-in policies, loadable by name with --policy NAME."""
    from icm.policy import builtin_policy_names, load_policy

    console.print(policies_table({name: load_policy(name) for name in builtin_policy_names()}))


def policies_table(policies: dict[str, Policy]) -> Table:
    table = output.table("name", "version", "rules", "description", show_lines=False)
    for name, policy in policies.items():
        output.add_row(table, name, policy.version, len(policy.rules), policy.name)
    return table


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Built-in policy name or YAML file."),
    as_yaml: bool = typer.Option(
        False, "--yaml", help="Print the policy as a YAML policy file (defaults left out)."
    ),
) -> None:
    """Show a policy's rules, criteria and how the local engine sees each criterion."""
    from icm.policy import load_policy
    from icm.policy.load import dump_policy

    policy = load_policy(name)
    if as_yaml:
        typer.echo(dump_policy(policy), nl=False)
        return
    console.print(policy_view(policy))


def policy_view(policy: Policy) -> Group:
    """The policy's heading and a table of its rules, criteria and local signals."""
    heading = Text.assemble((policy.id, "bold"), f" v{policy.version}: {policy.name}")
    lines: list[Text | Table] = [heading]
    if policy.description:
        lines.append(Text(policy.description.strip()))
    lines.append(Text(
        f"uncertain rules -> {policy.uncertainty.action}; unjudged images -> {policy.uncertainty.error_action}"
    ))
    table = output.table("rule", "severity", "action", "criterion", "local signals", show_lines=True)
    for rule in policy.rules:
        for i, criterion in enumerate(rule.criteria or []):
            signals = (
                Text(", ".join(str(s) for s in criterion.signals))
                if criterion.signals else Text("none: uncertain", style="yellow")
            )
            first = i == 0
            output.add_row(
                table,
                f"{rule.id}\n{rule.text}" if first else "",
                rule.severity.value if first else "",
                rule.action.value if first else "",
                f"{criterion.id}: {criterion.description}",
                signals,
            )
        if not rule.criteria:
            output.add_row(table, f"{rule.id}\n{rule.text}", rule.severity.value, rule.action.value, "", "")
    lines.append(table)
    return Group(*lines)


@app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Policy YAML files to check.")) -> None:
    """Check policy files; prints every problem with its line. Exit 0 if all are valid, else 2."""
    from icm.policy import PolicyError, load_policy

    failed = False
    for file in files:
        try:
            policy = load_policy(file)
        except PolicyError as exc:
            failed = True
            errors.print(validation_line(file, exc))
            continue
        console.print(validation_line(file, policy), soft_wrap=True)
    if failed:
        raise typer.Exit(2)


def validation_line(file: Path | str, outcome: Policy | Exception) -> Text:
    """``valid FILE: ...`` or ``invalid FILE: every problem``."""
    if isinstance(outcome, Exception):
        return output.labelled("invalid", "red", f"{file}: {outcome}")
    return output.labelled(
        "valid", "green", f"{file}: {outcome.id} v{outcome.version}, {len(outcome.rules)} rules"
    )


@app.command("decompose")
def decompose(
    file: str = typer.Argument(..., help="Policy YAML file (or built-in name) with rules lacking criteria."),
    llm: str = typer.Option("llama-cpp:smollm2", "--llm", help="Text model: llama-cpp:PATH.gguf, openai:MODEL@URL."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Draft file to write (default NAME.draft.yaml)."),
) -> None:
    """Draft criteria and explicit descriptions for rules that have none, for a human to review.

    Writes a new file with the version bumped; never overwrites. Rules with criteria are kept as they are.
    """
    from icm.backends.base import load_chat_model
    from icm.policy.decompose import decompose_file

    try:
        target, report = decompose_file(file, load_chat_model(llm), out)
    except FileExistsError as exc:
        errors.print(output.error(exc))
        raise typer.Exit(2) from exc
    console.print(decompose_report(report, target), soft_wrap=True)


def decompose_report(report: DecomposeReport, target: Path) -> Group:
    """One line per rule drafted or not, and where the draft is."""
    lines: Sequence[Text] = [
        *(output.labelled("drafted", "green", f"{rule_id}: {', '.join(criteria)}")
          for rule_id, criteria in report.drafted.items()),
        *(output.labelled("not drafted", "yellow", f"{rule_id}: {why}") for rule_id, why in report.failed.items()),
        Text(f"draft written to {target}; review it before use"),
    ]
    return Group(*lines)


@app.command("replay", no_args_is_help=True)
def replay(
    db: str | None = DB,
    policy: str = typer.Option(..., "--policy", "-p", help="The new policy version (YAML file or built-in name)."),
    backend: str = typer.Option("local", "--backend", "-b", help="Backend spec to judge with."),
    image_dir: Path = IMAGE_DIR,
    keep_images: str = KEEP_IMAGES,
    against: str = typer.Option(None, "--against", help="Stored policy id to replay (default: the new policy's id).",
                                show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Judge the store's kept images again under a new policy (or backend) and report which
    decisions and rule verdicts would change, and how each fares against reviewers' labels."""
    import json

    from icm.policy import load_policy

    with needs_extra("serve", "icm policy replay"):
        from icm.serve.review.replay import replay as run

    new = load_policy(policy)
    with kept_store(db, keep_images, image_dir) as (reviews, images):
        report = run(reviews, images, new, backend, against)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    console.print(output.text(
        f"{report.policy} with {report.backend}: {report.judged} images judged again, "
        f"{sum(report.decisions.values())} decisions would change"
        + (f", {report.missing_images} kept images missing" if report.missing_images else "")
        + (f", {report.errors} not judged (errors)" if report.errors else "")
    ))
    for failure in report.failures:
        console.print(output.text(f"not judged: {failure['image']} (result {failure['result_id']}): "
                                  f"{failure['code']}: {failure['message']}"))
    if report.decisions:
        console.print(output.text("decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(report.decisions.items()))))
    table = output.table("rule", "judged", "changed", "changes", "labelled", "stored right", "new right")
    for rule in report.rules.values():
        table.add_row(output.text(rule.rule_id), str(rule.judged), str(rule.changed),
                      output.text(", ".join(f"{k} {v}" for k, v in sorted(rule.transitions.items()))),
                      str(rule.labelled), str(rule.stored_correct), str(rule.new_correct))
    console.print(table)
