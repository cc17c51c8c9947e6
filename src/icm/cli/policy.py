"""``icm policy``: list, show and validate policies."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List, show and validate moderation policies.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.command("list")
def list_policies() -> None:
    """The built-in policies, loadable by name with --policy NAME."""
    from icm.policy import builtin_policy_names, load_policy

    table = Table("name", "version", "rules", "description", show_lines=False)
    for name in builtin_policy_names():
        policy = load_policy(name)
        table.add_row(name, str(policy.version), str(len(policy.rules)), policy.name)
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Built-in policy name or YAML file."),
    as_yaml: bool = typer.Option(False, "--yaml", help="Print the normalised policy as YAML."),
) -> None:
    """Show a policy's rules, criteria and how the local engine sees each criterion."""
    import yaml

    from icm.policy import PolicyError, load_policy

    try:
        policy = load_policy(name)
    except PolicyError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_yaml:
        data = policy.model_dump(mode="json")
        for rule in data["rules"]:
            for criterion in rule["criteria"]:
                criterion["signals"] = [
                    f"{s['source']}:{s['name']}{s['op']}{s['threshold']:g}"
                    for s in criterion["signals"]
                ]
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return
    console.print(f"[bold]{policy.id}[/bold] v{policy.version}: {policy.name}")
    if policy.description:
        console.print(policy.description.strip())
    console.print(
        f"uncertain rules -> {policy.uncertainty.action}; unjudged images -> "
        f"{policy.uncertainty.error_action}"
    )
    table = Table("rule", "severity", "action", "criterion", "local signals", show_lines=True)
    for rule in policy.rules:
        for i, criterion in enumerate(rule.criteria or []):
            signals = ", ".join(str(s) for s in criterion.signals) or "[yellow]none: uncertain[/yellow]"
            first = i == 0
            table.add_row(
                f"{rule.id}\n{rule.text}" if first else "",
                str(rule.severity) if first else "",
                str(rule.action) if first else "",
                f"{criterion.id}: {criterion.description}",
                signals,
            )
        if not rule.criteria:
            table.add_row(f"{rule.id}\n{rule.text}", str(rule.severity), str(rule.action), "", "")
    console.print(table)


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
            errors.print(f"[red]invalid[/red] {file}: {exc}")
            continue
        console.print(f"[green]valid[/green] {file}: {policy.id} v{policy.version}, {len(policy.rules)} rules")
    if failed:
        raise typer.Exit(2)


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
    from icm.llm import LLMError
    from icm.policy import PolicyError
    from icm.policy.decompose import decompose_file

    try:
        target, report = decompose_file(file, load_chat_model(llm), out)
    except (PolicyError, LLMError, FileExistsError) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for rule_id, criteria in report.drafted.items():
        console.print(f"[green]drafted[/green] {rule_id}: {', '.join(criteria)}")
    for rule_id, why in report.failed.items():
        console.print(f"[yellow]not drafted[/yellow] {rule_id}: {why}")
    console.print(f"draft written to {target}; review it before use")
