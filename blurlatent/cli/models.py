"""The models command: the built-in models and their cards."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from blurlatent.cli.common import app
from blurlatent.cli.errors import OneLineCommand


@app.command("models", cls=OneLineCommand)
def models_cli(
    verify: bool = typer.Option(False, "--verify", help="Also check each model's sha256 against its card."),
):
    """List the models built into blurlatent (used by blur and deblur when no --checkpoint is given)."""
    from blurlatent.inference.builtin import builtin_models, builtin_path  # torch: not for --help
    from blurlatent.inference.scale import card_scale

    screen = Console()
    models = builtin_models()
    if not models:
        screen.print("no built-in models in this installation; train one (`blurlatent demo`, `blurlatent train`) "
                     "and pass it with --checkpoint")
        return
    table = Table(title="built-in models")
    for column in ("name", "channel", "architecture", "weights"):
        table.add_column(column)
    for model in models:
        card = model.card
        weights = f"{card.get('precision', '?')}, {card.get('bytes', 0) / 1e6:.1f} MB"
        if verify:
            builtin_path(model)
            weights += ", sha256 ok"
        table.add_row(model.name, model.channel, card.get("arch", "?"), weights)
    screen.print(table)
    for model in models:
        card = model.card
        screen.print(f"\n[bold]{model.name}[/bold]: {model.summary}", highlight=False)
        if card_scale(card).words():  # what inference resamples inputs to (--rescale auto)
            screen.print(f"  trained at: {card_scale(card).words()}", highlight=False, soft_wrap=True)
        for key in ("trained_on", "limits", "reproduce"):
            value = card.get(key)
            if value:
                screen.print(f"  {key.replace('_', ' ')}: {'; '.join(value) if isinstance(value, list) else value}",
                             highlight=False, soft_wrap=True)
        bench = card.get("benchmark")
        if isinstance(bench, dict) and isinstance(bench.get("deblur"), dict):
            screen.print(benchmark_table(bench))


def benchmark_table(bench: dict) -> Table:
    """The card's deblurring figures: one row per method, one column per pair (0, k) → 16."""
    rows = bench["deblur"]
    pairs = list(next(iter(rows.values())))
    table = Table(title=f"deblurring → z16 on {bench.get('test_set', 'a synthetic test set')} (PSNR dB / SSIM, "
                        "after a gain/offset fit)", title_justify="left")
    table.add_column("method")
    for pair in pairs:
        table.add_column(pair, justify="right")
    for method, scores in rows.items():
        table.add_row(method, *[f"{scores[p][0]:.2f} / {scores[p][1]:.3f}" for p in pairs])
    blur = bench.get("blur_synthesis_db") or {}
    if blur:
        table.caption = "blur synthesis vs the real plane, mean over k: " + ", ".join(
            f"{k} {v:.2f} dB" for k, v in blur.items())
    return table
