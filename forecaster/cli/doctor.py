"""`forecaster doctor`: one line per check, each with its fix; exit 1 when any check fails."""

from __future__ import annotations

from typing import Annotated

import typer

from forecaster.cli.common import app, load_settings, out


@app.command()
def doctor(
    cheap: Annotated[bool, typer.Option("--cheap", help="Only what needs no network (Redis aside) and no torch: "
                                                        "what `forecaster up` checks before starting.")] = False,
) -> None:
    """Check this machine and configuration: packages, Redis, Slack, Finnhub, Yahoo, GPU memory, model files."""
    from forecaster.doctor import all_checks, cheap_checks, render, summary

    settings = load_settings()
    checks = cheap_checks(settings) if cheap else all_checks(settings)
    for check in checks:
        out.print(render(check), highlight=False, markup=False, soft_wrap=True)
    out.print(summary(checks), highlight=False, markup=False)
    if any(check.failed for check in checks):
        raise typer.Exit(1)
