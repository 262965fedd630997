"""``llmmeter forecast``: the period-end spend forecast with its interval and method."""

from __future__ import annotations

import json

import click

from llmmeter_collector.cli.common import get, json_option, url_option, usd, warn_unknown


@click.command()
@url_option
@json_option
@click.option("--period", type=click.Choice(["day", "week", "month"]), default="month", show_default=True)
@click.option("--method", type=click.Choice(["auto", "run_rate", "trend"]), default="auto", show_default=True)
@click.option("--level", type=click.IntRange(50, 99), default=80, show_default=True, help="Interval, in percent.")
@click.option("--project", default=None, help="Only this project.")
@click.option("--feature", default=None, help="Only this feature.")
def forecast(
    url: str, as_json: bool, period: str, method: str, level: int, project: str | None, feature: str | None
) -> None:
    """What this day / week / month will have cost by its end, with an interval."""
    params = {"period": period, "method": method, "level": level}
    params.update({k: v for k, v in (("project", project), ("feature", feature)) if v})
    data = get(url, "/api/v1/forecast", params)
    if not as_json:
        warn_unknown(url, {"project": project, "feature": feature})
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    scope = ", ".join(f"{k} {data[k]}" for k in ("project", "feature") if data.get(k)) or "all projects"
    click.echo(f"{period} {data['period_start'][:10]} to {data['period_end'][:10]} ({scope})")
    days = f"after {data['elapsed_days']:.1f} of {data['period_days']:g} days"
    click.echo(f"  spent so far      {usd(data['spent_usd'])}  {days}")
    click.echo(f"  forecast at end   {usd(data['expected_usd'])}")
    if data["lower_usd"] is not None:
        click.echo(f"  {level} % interval    {usd(data['lower_usd'])} – {usd(data['upper_usd'])}")
    else:
        click.echo("  interval          (needs two complete days of the period)")
    click.echo(f"  daily rate        {usd(data['daily_rate_usd'])}   method {data['method']}")
