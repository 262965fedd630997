#!/usr/bin/env python3
"""llmmeter's Grafana dashboards as code: ``python grafana/generate.py`` writes ``grafana/dashboards/*.json``.

The committed JSON is this script's output (a test fails when they differ), so a dashboard is changed here and
regenerated, never edited by hand in Grafana. ``--check`` exits 1 when the committed files are stale.

Conventions shared by every dashboard:
* datasources by fixed uid (``llmmeter-prometheus``, ``llmmeter-postgres``, provisioned in
  ``grafana/provisioning/datasources``); money in ``currencyUSD``; dashboard time zone UTC, like the ledger's
  rollup buckets, so "today" and daily bars are UTC days.
* Variables ``project``, ``environment``, ``provider``, ``model``, ``feature``: multi-value, "All" = ``.*``,
  values from the Postgres rollups seen in the selected range. SQL matches them as anchored regexes
  (``project ~ '^(${project:regex})$'``), PromQL as ``project=~"$project"``. ``environment`` is not a
  Prometheus label (labels stay bounded), so Prometheus panels say in their description that it does not
  filter them.
* Money comes from Postgres (exact ``numeric`` sums of the ledger and its rollups, the same figures as
  ``llmmeter status``); rates, latency histograms and budget gauges come from Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    gauge,
    piechart,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import (
    table as tables,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import piechart as pm
from grafana_foundation_sdk.models import prometheus as promm

Json = dict[str, Any]
Panel = Any  # a panel builder of grafana-foundation-sdk (stat.Panel, timeseries.Panel, ...)

# Datasources are template variables whose defaults are the provisioned uids, so the boards also import into a
# Grafana whose datasources have other names: pick them in the variables.
PROMETHEUS_UID = "llmmeter-prometheus"
POSTGRES_UID = "llmmeter-postgres"
PROMETHEUS = {"type": "prometheus", "uid": "${prometheus}"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "${postgres}"}
# A call's trace id opens the tracing backend at this URL + the id (the calls explorer's trace_url variable).
TRACE_URL = "http://localhost:16686/trace/"  # Jaeger's UI; Zipkin: http://localhost:9411/zipkin/traces/
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DIMENSIONS = ("project", "environment", "provider", "model", "feature")
PROM_DIMENSIONS = ("project", "provider", "model", "feature")
MONEY_COLUMNS = ".*(cost|spend|saved|spent|limit|forecast).*"  # table columns shown in USD
NOT_BY_ENVIRONMENT = " Prometheus panel: the environment variable does not filter it (not a Prometheus label)."
MODEL_COMPARISON = "llmmeter-model-comparison"
TRACE_ID_COLUMN = "trace_id"


def _ref(ds: Json) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=ds["type"], uid=ds["uid"])


# --- queries -----------------------------------------------------------------------------------------------


def dims_sql(prefix: str = "") -> str:
    """WHERE conditions applying the five dimension variables to a ledger or rollup table."""
    return " AND ".join(f"{prefix}{d} ~ '^(${{{d}:regex}})$'" for d in DIMENSIONS)


def sel(**extra: str) -> str:
    """A PromQL label selector applying the dimension variables (plus fixed matchers)."""
    matchers = [f'{d}=~"${d}"' for d in PROM_DIMENSIONS] + [f'{k}="{v}"' for k, v in extra.items()]
    return "{" + ", ".join(matchers) + "}"


class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL query of Grafana's Postgres datasource (grafana-foundation-sdk has no builder for it)."""

    def __init__(self, raw: str, fmt: str, ref: str) -> None:
        self.raw, self.fmt, self.ref = raw, fmt, ref

    def to_json(self) -> Json:
        return {
            "datasource": POSTGRES,
            "refId": self.ref,
            "editorMode": "code",
            "rawQuery": True,
            "format": self.fmt,
            "rawSql": self.raw,
        }


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, raw: str, fmt: str, ref: str) -> None:
        self._query = SqlQuery(raw, fmt, ref)

    def build(self) -> SqlQuery:
        return self._query


Target = cogbuilder.Builder[Any]


def sql(raw: str, fmt: str = "table", ref: str = "A") -> Target:
    """A raw-SQL target. In ``raw``, ``{dims}`` stands for the dimension filters and ``{range}`` for
    ``$__timeFilter(ts) AND {dims}`` (the usual WHERE clause on ``llm_calls``)."""
    raw = raw.replace("{range}", "$__timeFilter(ts) AND {dims}").replace("{dims}", dims_sql())
    return Sql(" ".join(raw.split()), fmt, ref)


def prom(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A", table: bool = False) -> Target:
    target = (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .ref_id(ref)
        .editor_mode(promm.QueryEditorMode.CODE)
        .expr(" ".join(expr.split()))
        .legend_format(legend or "__auto")
    )
    target = target.instant() if instant else target.range()
    if table:
        target = target.format(promm.PromQueryFormat.TABLE)
    return target


def quantiles(metric: str, by: str = "model") -> list[Target]:
    return [
        prom(
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{sel()}[$__rate_interval])))",
            f"{{{{{by}}}}} p{int(q * 100)}",
            ref=ref,
        )
        for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
    ]


# --- panels ------------------------------------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> board.ThresholdsConfig:
    return (
        board.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


GREEN = ((None, "green"),)
KINDS: dict[str, type[Any]] = {
    "stat": stat.Panel,
    "timeseries": timeseries.Panel,
    "table": tables.Panel,
    "bargauge": bargauge.Panel,
    "piechart": piechart.Panel,
    "gauge": gauge.Panel,
}


def _reduce(values: bool) -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(values)


def panel(
    kind: str,
    title: str,
    targets: list[Target],
    *,
    description: str,
    unit: str | None = None,
    decimals: int | None = None,
    steps: board.ThresholdsConfig | None = None,
    money_columns: bool = False,
    time_from: str | None = None,
    transformations: list[Json] | None = None,
    minmax: tuple[float, float] | None = None,
) -> Panel:
    built = KINDS[kind]().title(title).description(description)
    sources = [t.build().to_json()["datasource"] for t in targets]  # PROMETHEUS or POSTGRES
    if all(source == sources[0] for source in sources):
        built = built.datasource(_ref(sources[0]))
    else:
        built = built.datasource(dm.DataSourceRef(type_val="datasource", uid="-- Mixed --"))
    for target in targets:
        built = built.with_target(target)
    built = built.thresholds(steps or thresholds(*GREEN))
    scheme = "palette-classic" if kind in ("timeseries", "piechart") else "thresholds"
    built = built.color_scheme(board.FieldColor().mode(dm.FieldColorModeId(scheme)))
    if unit:
        built = built.unit(unit)
    if decimals is not None:
        built = built.decimals(decimals)
    if minmax:
        built = built.min(minmax[0]).max(minmax[1])
    if money_columns:
        built = built.override_by_regexp(
            MONEY_COLUMNS,
            [
                dm.DynamicConfigValue(id_val="unit", value="currencyUSD"),
                dm.DynamicConfigValue(id_val="decimals", value=6),
            ],
        )
    if time_from:
        built = built.time_from(time_from)
    for transformation in transformations or ():
        built = built.with_transformation(
            dm.DataTransformerConfig(id_val=transformation["id"], options=transformation["options"])
        )
    return built


def stat_panel(title: str, target: Target, *, description: str, unit: str, **kw: Any) -> Panel:
    return (
        panel("stat", title, [target], description=description, unit=unit, **kw)
        .reduce_options(_reduce(False))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .text_mode(cm.BigValueTextMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )


def gauge_panel(title: str, target: Target, *, description: str, unit: str, **kw: Any) -> Panel:
    return (
        panel("gauge", title, [target], description=description, unit=unit, **kw)
        .reduce_options(_reduce(False))
        .show_threshold_markers(True)
        .show_threshold_labels(False)
        .orientation(cm.VizOrientation.AUTO)
    )


def timeseries_panel(
    title: str,
    targets: list[Target],
    *,
    description: str,
    unit: str,
    bars: bool = False,
    stacked: bool = False,
    **kw: Any,
) -> Panel:
    return (
        panel("timeseries", title, targets, description=description, unit=unit, **kw)
        .draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
        .fill_opacity(80 if bars else 10)
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE).group("A"))
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["sum" if bars else "mean", "max"])
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )


def table_panel(
    title: str,
    targets: list[Target],
    *,
    description: str,
    model_links: bool = False,
    trace_links: bool = False,
    **kw: Any,
) -> Panel:
    built = (
        panel("table", title, targets, description=description, money_columns=True, **kw)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(common.TableFooterOptions().show(False).reducer(["sum"]))
    )
    return with_links(built, trace=trace_links) if model_links or trace_links else built


def bars_panel(title: str, target: Target, *, description: str, unit: str, **kw: Any) -> Panel:
    """A bar gauge with one bar per row of a table-format query."""
    return (
        panel("bargauge", title, [target], description=description, unit=unit, **kw)
        .reduce_options(_reduce(True))
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .value_mode(cm.BarGaugeValueMode.COLOR)
    )


def pie_panel(title: str, target: Target, *, description: str, unit: str) -> Panel:
    return (
        panel("piechart", title, [target], description=description, unit=unit)
        .reduce_options(_reduce(True))
        .pie_type(pm.PieChartType.DONUT)
        .legend(
            piechart.PieChartLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT])
            .show_legend(True)
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE))
    )


def _link(title: str, url: str, new_tab: bool = False) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="links", value=[{"title": title, "url": url, "targetBlank": new_tab}])


def with_links(p: Panel, *, trace: bool = False) -> Panel:
    """Data links on a table's cells: a model opens the model comparison filtered to it (same time range and
    project); with ``trace``, a trace id opens the tracing backend (the ``trace_url`` variable + the id)."""
    compare = f"/d/{MODEL_COMPARISON}?var-model=${{__value.raw}}&${{__url_time_range}}&${{project:queryparam}}"
    p = p.override_by_name("model", [_link("Compare this model", compare)])
    if trace:
        p = p.override_by_name(TRACE_ID_COLUMN, [_link("Open the trace", "${trace_url}${__value.raw}", new_tab=True)])
    return p


# --- variables and dashboards ------------------------------------------------------------------------------

_LABELS = {
    "project": "Project",
    "environment": "Environment",
    "provider": "Provider",
    "model": "Model",
    "feature": "Feature",
}
_DEPENDS = {
    "project": (),
    "environment": ("project",),
    "provider": ("project",),
    "model": ("project", "provider"),
    "feature": ("project",),
}
_ALL = dm.VariableOption(selected=True, text=["All"], value=["$__all"])


def datasource_variable(name: str, label: str, plugin: str, default: str) -> board.DatasourceVariable:
    """The datasource the boards query, by default the provisioned one."""
    return (
        board.DatasourceVariable(name)
        .label(label)
        .type(plugin)
        .current(dm.VariableOption(selected=True, text=default, value=default))
    )


def dimension_variable(name: str) -> board.QueryVariable:
    """A multi-value variable of one dimension, values seen in the rollups in the selected range."""
    where = ["bucket >= date_trunc('hour', $__timeFrom()::timestamptz)", "bucket <= $__timeTo()"]
    where += [f"{d} ~ '^(${{{d}:regex}})$'" for d in _DEPENDS[name]]
    query = (
        f"SELECT DISTINCT {name} AS __value, CASE WHEN {name} = '' THEN '(none)' ELSE {name} END AS __text"
        f" FROM llm_rollup_hour WHERE {' AND '.join(where)} ORDER BY 1"
    )
    return (
        board.QueryVariable(name)
        .label(_LABELS[name])
        .datasource(_ref(POSTGRES))
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_ALL)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def textbox(name: str, label: str, default: str = "") -> board.TextBoxVariable:
    return (
        board.TextBoxVariable(name)
        .label(label)
        .default_value(default)
        .current(dm.VariableOption(selected=False, text=default, value=default))
    )


def prom_variable(name: str, label: str, query: str) -> board.QueryVariable:
    return (
        board.QueryVariable(name)
        .label(label)
        .datasource(_ref(PROMETHEUS))
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_ALL)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


class Dashboard:
    """One board: lays panels out left to right on Grafana's 24-column grid, numbers them and builds the
    dashboard with grafana-foundation-sdk."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        *,
        time_from: str,
        extra_variables: list[cogbuilder.Builder[dm.VariableModel]] | None = None,
    ) -> None:
        self.board = (
            board.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["llmmeter"])
            .timezone("utc")
            .week_start("monday")
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .refresh("1m")
            .time(time_from, "now")
            .link(
                board.DashboardLink("llmmeter")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["llmmeter"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
        )
        self.board = self.board.with_variable(
            datasource_variable("prometheus", "Prometheus", "prometheus", PROMETHEUS_UID)
        ).with_variable(datasource_variable("postgres", "Postgres", "grafana-postgresql-datasource", POSTGRES_UID))
        for variable in [*(extra_variables or []), *(dimension_variable(d) for d in DIMENSIONS)]:
            self.board = self.board.with_variable(variable)
        self._x = self._y = self._row_height = 0
        self._id = 0
        self._annotations: list[Json] = []

    def annotate(self, name: str, raw: str, color: str) -> None:
        """A Postgres annotation query (rows with ``time`` and ``text``): grafana-foundation-sdk's annotation target
        models Grafana's own annotations only, so this one is written as Grafana stores it."""
        target = {
            "refId": "Anno",
            "editorMode": "code",
            "rawQuery": True,
            "format": "table",
            "rawSql": " ".join(raw.split()),
        }
        self._annotations.append(
            {"datasource": POSTGRES, "enable": True, "hide": False, "iconColor": color, "name": name, "target": target}
        )

    def _next_id(self) -> int:
        self._id += 1
        return self._id

    def row(self, title: str) -> None:
        self._newline()
        self.board = self.board.with_row(
            board.Row(title).id(self._next_id()).collapsed(False).grid_pos(dm.GridPos(x=0, y=self._y, w=24, h=1))
        )
        self._y += 1

    def add(self, p: Panel, w: int, h: int = 8) -> None:
        if self._x + w > 24:
            self._newline()
        self.board = self.board.with_panel(p.id(self._next_id()).grid_pos(dm.GridPos(x=self._x, y=self._y, w=w, h=h)))
        self._x += w
        self._row_height = max(self._row_height, h)

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = self._row_height = 0

    def json(self) -> Json:
        built: Json = json.loads(json.dumps(self.board.build(), cls=JSONEncoder))
        if self._annotations:
            built.setdefault("annotations", {}).setdefault("list", []).extend(self._annotations)
        return built


# --- 1. Cost overview --------------------------------------------------------------------------------------


def none(col: str) -> str:
    """Show an empty dimension value as "(none)"."""
    return f"CASE WHEN {col} = '' THEN '(none)' ELSE {col} END"


# a dimension value whose calls are all unpriced has no spend to show (it is in "Models without a price")
PRICED = "HAVING sum(calls) > sum(unpriced_calls)"
SPEND = "SELECT coalesce(sum(cost_usd), 0) AS spend FROM {table} WHERE $__timeFilter(bucket) AND {dims}"


def spend_by(col: str, alias: str) -> Target:
    return sql(f"""
        SELECT {col} AS {alias}, sum(cost_usd) AS spend FROM llm_rollup_minute
        WHERE $__timeFilter(bucket) AND {{dims}} GROUP BY 1 {PRICED} ORDER BY 2 DESC, 1""")


TOKEN_CLASSES = (
    ("input (uncached)", "input_tokens - cache_read_tokens - cache_write_tokens"),
    ("cache read", "cache_read_tokens"),
    ("cache write", "cache_write_tokens"),
    ("output (visible)", "output_tokens - reasoning_tokens"),
    ("reasoning", "reasoning_tokens"),
)


def cost_overview() -> Json:
    d = Dashboard(
        "llmmeter-cost-overview",
        "llmmeter / Cost overview",
        "What the LLM calls cost: spend by period, model, provider, feature and project; tokens, caching, "
        "unpriced calls, errors and latency.",
        time_from="now-30d",
    )
    d.row("Spend")
    hourly = SPEND.replace("{table}", "llm_rollup_hour")
    for title, period in (("Spend today", "now/d"), ("Spend this week", "now/w"), ("Spend this month", "now/M")):
        d.add(
            stat_panel(
                title,
                sql(hourly),
                unit="currencyUSD",
                time_from=period,
                description=f"Priced spend in the period so far (UTC; panel time {period}) from the hourly "
                "rollups: the same exact sum as `llmmeter status`.",
            ),
            4,
            4,
        )
    d.add(
        stat_panel(
            "Spend, all time",
            sql("SELECT coalesce(sum(cost_usd), 0) AS spend FROM llm_rollup_hour WHERE {dims}"),
            unit="currencyUSD",
            description="Everything the ledger holds; deliberately not limited by the time picker.",
        ),
        4,
        4,
    )
    d.add(
        stat_panel(
            "Spend in selected range",
            sql(SPEND.replace("{table}", "llm_rollup_minute")),
            unit="currencyUSD",
            description="Priced spend in the time picker's range (minute rollups: range edges count to the minute).",
        ),
        4,
        4,
    )
    d.add(
        stat_panel(
            "Unpriced calls in range",
            sql("""
                SELECT coalesce(sum(unpriced_calls), 0) AS unpriced FROM llm_rollup_minute
                WHERE $__timeFilter(bucket) AND {dims}"""),
            unit="short",
            steps=thresholds((None, "green"), (1, "red")),
            description="Calls whose model has no known price: stored with a NULL cost, never counted as $0. "
            "The table 'Models without a price' lists them.",
        ),
        4,
        4,
    )
    d.add(
        stat_panel(
            "Spend on incomplete usage in range",
            sql("SELECT coalesce(sum(cost_usd), 0) AS spend FROM llm_calls WHERE {range} AND usage_incomplete <> ''"),
            unit="currencyUSD",
            steps=thresholds((None, "green"), (0.000001, "orange")),
            description="Spend on calls whose instrumentation is known not to report a token class (the official "
            "openai-v2 sends no cached or reasoning tokens, so cached input is priced at the full rate). "
            "`llmmeter doctor` lists them by model and missing class.",
        ),
        4,
        4,
    )
    d.add(
        timeseries_panel(
            "Daily spend by model",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(bucket, 1d), model AS metric, sum(cost_usd) AS spend
                    FROM llm_rollup_hour WHERE $__timeFilter(bucket) AND {dims} GROUP BY 1, 2
                    HAVING sum(calls) > sum(unpriced_calls) ORDER BY 1, 2""",
                    fmt="time_series",
                )
            ],
            unit="currencyUSD",
            bars=True,
            stacked=True,
            description="Spend per UTC day, stacked by model; the dashboard opens on the last 30 days.",
        ),
        24,
        9,
    )
    d.add(
        pie_panel(
            "Spend by model",
            spend_by("model", "model"),
            unit="currencyUSD",
            description="Priced spend in the selected range by the model that served the call.",
        ),
        8,
    )
    d.add(
        pie_panel(
            "Spend by provider",
            spend_by("provider", "provider"),
            unit="currencyUSD",
            description="Priced spend in the selected range by provider.",
        ),
        8,
    )
    d.add(
        bars_panel(
            "Spend by project",
            spend_by(none("project"), "project"),
            unit="currencyUSD",
            description="Priced spend in the selected range by project.",
        ),
        8,
    )
    d.add(
        bars_panel(
            "Spend by feature",
            spend_by(none("feature"), "feature"),
            unit="currencyUSD",
            description="Priced spend in the selected range by feature (llmmeter.attributes(feature=...)).",
        ),
        12,
    )
    d.add(
        table_panel(
            "Models without a price",
            [
                sql("""
                    SELECT provider, model, count(*) AS calls, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, max(ts) AS last_call FROM llm_calls
                    WHERE {range} AND cost_usd IS NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""")
            ],
            model_links=True,
            description="Models the price catalog does not know: their calls are in no spend figure until a "
            "price override exists.",
        ),
        12,
    )

    d.row("Tokens and caching")
    token_classes = " UNION ALL ".join(
        f"SELECT '{name}' AS class, coalesce(sum({expr}), 0) AS tokens FROM llm_rollup_minute "
        "WHERE $__timeFilter(bucket) AND {dims}"
        for name, expr in TOKEN_CLASSES
    )
    d.add(
        bars_panel(
            "Tokens by class",
            sql(token_classes),
            unit="short",
            description="Tokens in the selected range in disjoint classes: the input classes add up to all "
            "input tokens, output and reasoning to all output tokens.",
        ),
        8,
    )
    d.add(
        stat_panel(
            "Cache hit rate",
            sql("""
                SELECT sum(cache_read_tokens)::numeric / nullif(sum(input_tokens), 0) AS cache_hit_rate
                FROM llm_rollup_minute WHERE $__timeFilter(bucket) AND {dims}"""),
            unit="percentunit",
            decimals=1,
            description="Share of input tokens read from the provider's prompt cache in the selected range.",
        ),
        4,
    )
    d.add(
        stat_panel(
            "Saved by caching (net)",
            sql("""
                SELECT coalesce(sum(saved), 0) AS saved FROM (
                  SELECT (sum(cache_read_tokens) + sum(cache_write_tokens)) * sum(cost_input_usd)
                         / nullif(sum(input_tokens - cache_read_tokens - cache_write_tokens - input_audio_tokens), 0)
                         - coalesce(sum(cost_cache_read_usd), 0) - coalesce(sum(cost_cache_write_usd), 0) AS saved
                  FROM llm_calls WHERE {range} AND cost_usd IS NOT NULL GROUP BY provider, model
                ) AS per_model"""),
            unit="currencyUSD",
            description="What the cached tokens would have cost at each model's uncached input price, minus what "
            "cache reads and writes cost (per model; a model with no uncached input in the range is left out).",
        ),
        4,
    )
    d.add(
        timeseries_panel(
            "Token rate by class",
            [prom(f"sum by (type) (rate(llmmeter_tokens_total{sel()}[$__rate_interval]))", "{{type}}")],
            unit="short",
            description="Tokens per second by token type (cache and reasoning tokens are parts of input and "
            "output)." + NOT_BY_ENVIRONMENT,
        ),
        8,
    )

    d.row("Spend rate, errors and latency")
    d.add(
        timeseries_panel(
            "Spend rate by model",
            [prom(f"sum by (model) (rate(llmmeter_cost_usd_total{sel()}[$__rate_interval])) * 3600", "{{model}}")],
            unit="currencyUSD",
            description="Live spend in USD per hour by model." + NOT_BY_ENVIRONMENT,
        ),
        12,
    )
    d.add(
        timeseries_panel(
            "Error rate by model",
            [prom(error_ratio("rate", "$__rate_interval"), "{{model}}")],
            unit="percentunit",
            description="Share of calls that failed, by model." + NOT_BY_ENVIRONMENT,
        ),
        12,
    )
    d.add(
        stat_panel(
            "Error rate in range",
            sql("""
                SELECT coalesce(sum(calls) FILTER (WHERE status = 'error'), 0)::numeric / nullif(sum(calls), 0)
                AS error_rate FROM llm_rollup_minute WHERE $__timeFilter(bucket) AND {dims}"""),
            unit="percentunit",
            decimals=1,
            steps=thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")),
            description="Failed calls / all calls in the selected range.",
        ),
        4,
    )
    d.add(
        stat_panel(
            "Retries in range",
            sql("SELECT coalesce(sum(retries), 0) AS retries FROM llm_calls WHERE {range}"),
            unit="short",
            description="Retries the provider SDKs made inside calls (llmmeter.retries): failed attempts that "
            "were repeated.",
        ),
        4,
    )
    d.add(
        timeseries_panel(
            "Failed calls and retries",
            [
                sql(
                    """
                    SELECT $__timeGroupAlias(ts, $__interval), count(*) FILTER (WHERE status = 'error')
                    AS failed_calls, coalesce(sum(retries), 0) AS retries FROM llm_calls WHERE {range}
                    GROUP BY 1 ORDER BY 1""",
                    fmt="time_series",
                )
            ],
            unit="short",
            bars=True,
            description="Failed calls and SDK retries per interval.",
        ),
        16,
    )
    d.add(
        timeseries_panel(
            "Latency p50 / p90 / p99 by model",
            quantiles("llmmeter_call_duration_seconds"),
            unit="s",
            description="Call duration quantiles from the collector's histogram." + NOT_BY_ENVIRONMENT,
        ),
        12,
        9,
    )
    d.add(
        timeseries_panel(
            "Time to first chunk p50 / p90 / p99 by model",
            quantiles("llmmeter_time_to_first_chunk_seconds"),
            unit="s",
            description="Streaming calls: time until the first chunk arrived." + NOT_BY_ENVIRONMENT,
        ),
        12,
        9,
    )
    return d.json()


def error_ratio(func: str, window: str) -> str:
    """Failed / all calls by model; 0 (not absent) for a model without failures."""
    errors = f"sum by (model) ({func}(llmmeter_calls_total{sel(status='error')}[{window}]))"
    calls = f"sum by (model) ({func}(llmmeter_calls_total{sel()}[{window}]))"
    return f"({errors} or 0 * {calls}) / {calls}"


# --- 2. Budgets --------------------------------------------------------------------------------------------


def budgets() -> Json:
    d = Dashboard(
        "llmmeter-budgets",
        "llmmeter / Budgets",
        "Every budget: how much is used, how fast it burns, where it will end the period, and firing alerts.",
        time_from="now-7d",
        extra_variables=[prom_variable("budget", "Budget", "label_values(llmmeter_budget_limit_usd, budget)")],
    )
    b = '{budget=~"$budget"}'
    d.row("Budgets")
    d.add(
        gauge_panel(
            "Budget used",
            prom(f"max by (budget) (llmmeter_budget_utilization_ratio{b})", "{{budget}}", instant=True),
            unit="percentunit",
            decimals=0,
            minmax=(0, 1.2),
            steps=thresholds((None, "green"), (0.8, "yellow"), (1.0, "red")),
            description="Spent / limit of each budget in its current period: yellow from 80 %, red from 100 %.",
        ),
        24,
        7,
    )
    for title, level, color in (("Budgets past warning", "warning", "yellow"), ("Budgets exceeded", "exceeded", "red")):
        d.add(
            stat_panel(
                title,
                prom(
                    f"count(llmmeter_budget_utilization_ratio{b} >= on (budget) "
                    f'llmmeter_budget_threshold_ratio{{budget=~"$budget", threshold="{level}"}}) or vector(0)',
                    instant=True,
                ),
                unit="short",
                steps=thresholds((None, "green"), (1, color)),
                description=f"Budgets whose utilization reached their {level} threshold.",
            ),
            6,
            4,
        )
    d.add(
        table_panel(
            "Current alerts",
            [prom('ALERTS{alertname=~"LLM.+"}', instant=True, table=True)],
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
            ],
            description="LLM alerts Prometheus is evaluating right now (pending or firing).",
        ),
        12,
        4,
    )
    d.add(
        table_panel(
            "Spent, forecast and limit",
            [
                prom(f"max by (budget) (llmmeter_budget_{name}_usd{b})", instant=True, table=True, ref=ref)
                for name, ref in (("spent", "A"), ("forecast", "B"), ("limit", "C"))
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "spent", "Value #B": "forecast", "Value #C": "limit"},
                    },
                },
            ],
            description="Each budget's spend so far in its period, the period-end forecast and the limit.",
        ),
        12,
    )
    d.add(
        timeseries_panel(
            "Forecast vs limit",
            [
                prom(f"max by (budget) (llmmeter_budget_{name}_usd{b})", f"{{{{budget}}}} {name}", ref=ref)
                for name, ref in (("forecast", "A"), ("limit", "B"), ("spent", "C"))
            ],
            unit="currencyUSD",
            description="How the period-end forecast moved against the limit.",
        ),
        12,
    )
    d.row("Burn")
    d.add(
        timeseries_panel(
            "Burn rate",
            [
                prom(
                    f"clamp_min(max by (budget) (deriv(llmmeter_budget_spent_usd{b}[$__rate_interval])), 0) * 3600",
                    "{{budget}}",
                )
            ],
            unit="currencyUSD",
            description="How fast each budget's spend grows, USD per hour (0 when a new period starts).",
        ),
        12,
    )
    d.add(
        timeseries_panel(
            "Spend rate by project",
            [
                prom(
                    f"sum by (project) (rate(llmmeter_cost_usd_total{sel()}[$__rate_interval])) * 3600",
                    "{{project}}",
                )
            ],
            unit="currencyUSD",
            description="USD per hour by project: what drives a budget's burn." + NOT_BY_ENVIRONMENT,
        ),
        12,
    )
    d.add(
        table_panel(
            "Spend in range by project and environment",
            [
                sql(f"""
                    SELECT {none("project")} AS project, {none("environment")} AS environment,
                    sum(calls) AS calls, sum(cost_usd) AS spend FROM llm_rollup_minute
                    WHERE $__timeFilter(bucket) AND {{dims}} GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2""")
            ],
            description="Exact spend from the ledger for the scopes budgets are usually set on.",
        ),
        24,
    )
    return d.json()


# --- 3. Attribution ----------------------------------------------------------------------------------------


def attribution() -> Json:
    d = Dashboard(
        "llmmeter-attribution",
        "llmmeter / Attribution",
        "Who and what the money goes to: users, sessions, features, projects, tags, prompt versions and "
        "experiment variants (from the Postgres ledger).",
        time_from="now-7d",
    )
    d.row("Top spenders")
    d.add(
        table_panel(
            "Top users by cost",
            [
                sql(f"""
                    SELECT {none("user_id")} AS user_id, count(*) AS calls, sum(input_tokens) AS input_tokens,
                    sum(output_tokens) AS output_tokens, coalesce(sum(cost_usd), 0) AS cost,
                    sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call,
                    count(*) - count(cost_usd) AS unpriced_calls
                    FROM llm_calls WHERE {{range}} GROUP BY 1 ORDER BY 5 DESC, 1 LIMIT 20""")
            ],
            description="The 20 users (user.id) with the highest priced spend in the selected range.",
        ),
        12,
        9,
    )
    d.add(
        table_panel(
            "Top sessions by cost",
            [
                sql(f"""
                    SELECT {none("session_id")} AS session_id, string_agg(DISTINCT {none("user_id")}, ', ') AS users,
                    count(*) AS calls, min(ts) AS first_call, max(ts) AS last_call,
                    coalesce(sum(cost_usd), 0) AS cost
                    FROM llm_calls WHERE {{range}} GROUP BY 1 ORDER BY 6 DESC, 1 LIMIT 20""")
            ],
            description="The 20 sessions (session.id) with the highest priced spend in the selected range.",
        ),
        12,
        9,
    )
    for dim, limit in (("feature", 15), ("project", 15)):
        d.add(
            bars_panel(
                f"Top {dim}s by cost",
                sql(f"""
                    SELECT {none(dim)} AS {dim}, coalesce(sum(cost_usd), 0) AS cost FROM llm_calls
                    WHERE {{range}} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {limit}"""),
                unit="currencyUSD",
                description=f"Priced spend by {dim} in the selected range.",
            ),
            8,
        )
    d.add(
        table_panel(
            "Spend by tag",
            [
                sql("""
                    SELECT tag.key AS tag, tag.value AS value, count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost
                    FROM llm_calls, jsonb_each_text(tags) AS tag WHERE {range}
                    GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2 LIMIT 50""")
            ],
            description="Priced spend by free-form tag (llmmeter.attributes(tags={...})).",
        ),
        8,
    )
    d.add(
        timeseries_panel(
            "Cost per user per day (top 10 users)",
            [
                sql(
                    f"""
                    WITH top AS (SELECT user_id FROM llm_calls WHERE {{range}} GROUP BY 1
                                 ORDER BY coalesce(sum(cost_usd), 0) DESC, 1 LIMIT 10)
                    SELECT $__timeGroupAlias(ts, 1d), {none("user_id")} AS metric, coalesce(sum(cost_usd), 0) AS cost
                    FROM llm_calls WHERE {{range}} AND user_id IN (SELECT user_id FROM top)
                    GROUP BY 1, 2 ORDER BY 1, 2""",
                    fmt="time_series",
                )
            ],
            unit="currencyUSD",
            bars=True,
            description="Daily priced spend (UTC days) of the 10 users who cost the most in the range.",
        ),
        24,
        9,
    )
    d.row("Prompts")
    prompt = "CASE WHEN prompt_name <> '' THEN prompt_name ELSE feature END"
    version = "CASE WHEN prompt_version <> '' THEN prompt_version ELSE 'template ' || left(template_fingerprint, 8) END"
    prompt_dims = " AND ".join(f"{d} ~ '^(${{{d}:regex}})$'" for d in ("project", "feature", "model"))
    d.add(
        timeseries_panel(
            "Cost per call by prompt version",
            [
                sql(
                    f"""
                    SELECT $__timeGroupAlias(bucket, 1d), {prompt} || ' ' || {version} AS metric,
                    sum(cost_usd) / nullif(sum(calls) - sum(unpriced_calls), 0) AS cost_per_call
                    FROM llm_rollup_prompt_day WHERE $__timeFilter(bucket) AND {prompt_dims}
                    GROUP BY 1, 2 ORDER BY 1, 2""",
                    fmt="time_series",
                )
            ],
            unit="currencyUSD",
            description="Daily cost per call of each prompt version (a named version, or a template fingerprint: "
            "the prompt's instructions). The annotations mark the day each version first appeared: what the "
            "new version did is the step after it. `llmmeter prompts show NAME` says it in numbers.",
        ),
        24,
        9,
    )
    d.annotate(
        "Prompt versions",
        f"""
        SELECT min(first_seen) AS time, {prompt} || ' ' || {version} || ': first seen' AS text,
        'prompt-version' AS tags
        FROM llm_rollup_prompt_day WHERE {prompt_dims}
        GROUP BY {prompt}, {version} HAVING min(first_seen) BETWEEN $__timeFrom() AND $__timeTo() ORDER BY 1""",
        "purple",
    )
    d.row("Experiments")
    d.add(
        table_panel(
            "Experiment variants side by side",
            [
                sql("""
                    SELECT experiment, variant, count(*) AS calls, count(DISTINCT user_id) AS users,
                    coalesce(sum(cost_usd), 0) AS cost, sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call,
                    avg(input_tokens) AS avg_input_tokens, avg(output_tokens) AS avg_output_tokens,
                    avg((status = 'error')::int) AS error_rate,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS p50_latency_s
                    FROM llm_calls WHERE {range} AND experiment <> '' GROUP BY 1, 2 ORDER BY 1, 2""")
            ],
            description="Calls tagged llmmeter.attributes(experiment=..., variant=...): what each variant costs "
            "per call, how many tokens it uses and how often it fails.",
        ),
        24,
        8,
    )
    return d.json()


# --- 4. Model comparison -----------------------------------------------------------------------------------

COST_PER_1K = "1000 * sum(cost_usd) / nullif(sum(input_tokens + output_tokens) FILTER (WHERE cost_usd IS NOT NULL), 0)"


def per_model(expr: str, alias: str) -> Target:
    return sql(f"""
        SELECT model, {expr} AS {alias} FROM llm_calls WHERE {{range}}
        GROUP BY 1 HAVING {expr} IS NOT NULL ORDER BY 2 DESC, 1""")


def model_comparison() -> Json:
    d = Dashboard(
        MODEL_COMPARISON,
        "llmmeter / Model comparison",
        "Models side by side: cost per call and per 1k tokens, tokens per call, latency, errors, and the same "
        "prompt sent to different models.",
        time_from="now-7d",
    )
    d.row("Side by side")
    d.add(
        table_panel(
            "Models side by side",
            [
                sql(f"""
                    SELECT provider, model, count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost,
                    sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call,
                    {COST_PER_1K} AS cost_per_1k_tokens,
                    avg(input_tokens) AS input_tokens_per_call, avg(output_tokens) AS output_tokens_per_call,
                    avg((status = 'error')::int) AS error_rate,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS p50_latency_s,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_s) AS p95_latency_s,
                    count(*) - count(cost_usd) AS unpriced_calls
                    FROM llm_calls WHERE {{range}} GROUP BY 1, 2 ORDER BY 5 DESC NULLS LAST, 1, 2""")
            ],
            description="Per model in the selected range. Cost per call and per 1k tokens count priced calls "
            "only, so an unpriced model does not look cheap.",
        ),
        24,
        9,
    )
    d.add(
        bars_panel(
            "Cost per call",
            per_model("sum(cost_usd) / nullif(count(cost_usd), 0)", "cost_per_call"),
            unit="currencyUSD",
            decimals=6,
            description="Average priced cost of one call.",
        ),
        8,
    )
    d.add(
        bars_panel(
            "Cost per 1k tokens",
            per_model(COST_PER_1K, "cost_per_1k_tokens"),
            unit="currencyUSD",
            decimals=6,
            description="Priced cost per 1000 tokens (input + output).",
        ),
        8,
    )
    d.add(
        bars_panel(
            "Tokens per call",
            per_model("avg(input_tokens + output_tokens)", "tokens_per_call"),
            unit="short",
            decimals=0,
            description="Average input + output tokens of one call.",
        ),
        8,
    )
    d.row("Latency and errors (Prometheus)")
    d.add(
        timeseries_panel(
            "Latency p50 / p90 / p99 by model",
            quantiles("llmmeter_call_duration_seconds"),
            unit="s",
            description="Call duration quantiles." + NOT_BY_ENVIRONMENT,
        ),
        12,
        9,
    )
    d.add(
        timeseries_panel(
            "Time to first chunk p50 / p90 / p99 by model",
            quantiles("llmmeter_time_to_first_chunk_seconds"),
            unit="s",
            description="Streaming calls: time to the first chunk." + NOT_BY_ENVIRONMENT,
        ),
        12,
        9,
    )
    d.add(
        bars_panel(
            "Error rate in range by model",
            prom(error_ratio("increase", "$__range"), "{{model}}", instant=True),
            unit="percentunit",
            description="Failed / all calls per model over the selected range." + NOT_BY_ENVIRONMENT,
        ),
        12,
    )
    d.add(
        timeseries_panel(
            "Calls per second by model",
            [prom(f"sum by (model) (rate(llmmeter_calls_total{sel()}[$__rate_interval]))", "{{model}}")],
            unit="reqps",
            description="Call rate by model." + NOT_BY_ENVIRONMENT,
        ),
        12,
    )
    d.row("Same prompt, different models")
    d.add(
        table_panel(
            "Same prompt fingerprint across models",
            [
                sql("""
                    WITH shared AS (SELECT prompt_fingerprint FROM llm_calls WHERE {range}
                                    AND prompt_fingerprint <> '' GROUP BY 1 HAVING count(DISTINCT model) > 1)
                    SELECT prompt_fingerprint AS fingerprint, provider, model, count(*) AS calls,
                    sum(cost_usd) / nullif(count(cost_usd), 0) AS cost_per_call,
                    avg(input_tokens) AS input_tokens_per_call, avg(output_tokens) AS output_tokens_per_call,
                    avg(duration_s) AS avg_latency_s, avg((status = 'error')::int) AS error_rate
                    FROM llm_calls WHERE {range} AND prompt_fingerprint IN (SELECT prompt_fingerprint FROM shared)
                    GROUP BY 1, 2, 3 ORDER BY 1, 5 NULLS LAST, 3""")
            ],
            model_links=True,
            description="Prompts (by their content-free fingerprint) sent to more than one model in the range: "
            "a direct price and latency comparison for the same work.",
        ),
        24,
        9,
    )
    return d.json()


# --- 5. Calls explorer -------------------------------------------------------------------------------------

EXPLORER_WHERE = (
    "{range} AND ('${trace_id}' = '' OR trace_id = '${trace_id}') AND ('${user_id}' = '' OR user_id = '${user_id}')"
)


def calls_explorer() -> Json:
    d = Dashboard(
        "llmmeter-calls",
        "llmmeter / Calls explorer",
        "Individual calls from the ledger: the most expensive ones, failures and unpriced calls, with trace ids.",
        time_from="now-24h",
        extra_variables=[
            textbox("trace_id", "Trace id"),
            textbox("user_id", "User id"),
            textbox("trace_url", "Tracing backend URL (+ trace id)", TRACE_URL),
        ],
    )
    w = EXPLORER_WHERE
    d.add(
        table_panel(
            "Most expensive calls",
            [
                sql(f"""
                    SELECT ts AS time, trace_id, span_id, project, environment, feature, user_id, session_id,
                    provider, model, input_tokens, cache_read_tokens, output_tokens, reasoning_tokens,
                    cost_usd AS cost, duration_s, status
                    FROM llm_calls WHERE {w} ORDER BY cost_usd DESC NULLS LAST, ts DESC LIMIT 200""")
            ],
            trace_links=True,
            description="The 200 costliest calls in the range (unpriced calls last); the trace id finds the call "
            "in a tracing backend. Filter by trace id or user id with the text boxes.",
        ),
        24,
        12,
    )
    d.add(
        table_panel(
            "Latest failed calls",
            [
                sql(f"""
                    SELECT ts AS time, trace_id, project, feature, user_id, provider, model, error_type, retries,
                    duration_s, cost_usd AS cost
                    FROM llm_calls WHERE {w} AND status = 'error' ORDER BY ts DESC LIMIT 100""")
            ],
            trace_links=True,
            description="Calls that ended in an error, newest first.",
        ),
        12,
        9,
    )
    d.add(
        table_panel(
            "Latest unpriced calls",
            [
                sql(f"""
                    SELECT ts AS time, trace_id, project, feature, provider, model, input_tokens, output_tokens
                    FROM llm_calls WHERE {w} AND cost_usd IS NULL ORDER BY ts DESC LIMIT 100""")
            ],
            trace_links=True,
            description="Calls whose model has no price (NULL cost, not $0).",
        ),
        12,
        9,
    )
    d.add(
        timeseries_panel(
            "Calls by status",
            [
                sql(
                    f"""
                    SELECT $__timeGroupAlias(ts, $__interval), status AS metric, count(*) AS calls
                    FROM llm_calls WHERE {w} GROUP BY 1, 2 ORDER BY 1, 2""",
                    fmt="time_series",
                )
            ],
            unit="short",
            bars=True,
            stacked=True,
            description="Calls per interval by status.",
        ),
        24,
    )
    return d.json()


DASHBOARDS = {
    "cost-overview.json": cost_overview,
    "budgets.json": budgets,
    "attribution.json": attribution,
    "model-comparison.json": model_comparison,
    "calls-explorer.json": calls_explorer,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = DASHBOARD_DIR / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
