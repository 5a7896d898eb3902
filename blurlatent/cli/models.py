"""The models command: the built-in models and their cards."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import handle_errors
from .common import app


@app.command("models")
@handle_errors
def models_cli(
    verify: bool = typer.Option(False, "--verify", help="Also check each model's sha256 against its card."),
):
    """List the models built into blurlatent (used by blur and deblur when no --checkpoint is given)."""
    from ..builtin import builtin_models, builtin_path  # torch: not for --help

    screen = Console()
    models = builtin_models()
    if not models:
        screen.print("no built-in models in this installation; train one (`blurlatent demo`, `blurlatent train`) "
                     "and pass it with --checkpoint")
        return
    table = Table(title="built-in models")
    for column in ("name", "channel", "architecture", "trained on", "weights"):
        table.add_column(column)
    for model in models:
        card = model.card
        weights = f"{card.get('precision', '?')}, {card.get('bytes', 0) / 1e6:.1f} MB"
        if verify:
            builtin_path(model)
            weights += ", sha256 ok"
        table.add_row(model.name, model.channel, card.get("arch", "?"), card.get("trained_on", ""), weights)
    screen.print(table)
    for model in models:
        screen.print(f"\n[bold]{model.name}[/bold]: {model.summary}", highlight=False)
        for key in ("benchmark", "limits", "reproduce"):
            value = model.card.get(key)
            if isinstance(value, dict):
                value = "; ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = "; ".join(map(str, value))
            if value:
                screen.print(f"  {key}: {value}", highlight=False, soft_wrap=True)
