"""The Grafana query expander the dashboard tests rely on writes what Grafana writes.

Expected strings are those of Grafana's own macro tests (pkg/tsdb/grafana-postgresql-datasource) and of its
template variable formats; a wrong expander would make the query tests pass for queries Grafana breaks.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from .grafana_macros import (
    ALL,
    MacroError,
    TimeRange,
    Variable,
    expand_promql,
    expand_sql,
    format_duration,
    interval_seconds,
    panel_range,
    parse_time,
)

# Grafana's macros_test.go range: 2018-04-12 18:00 UTC .. +5 minutes
FROM = datetime(2018, 4, 12, 18, 0, 0, tzinfo=timezone.utc)
TO = datetime(2018, 4, 12, 18, 5, 0, tzinfo=timezone.utc)
RANGE = TimeRange(FROM, TO)


def dims(**selected: object) -> dict[str, Variable]:
    variables = {
        "project": Variable("project", multi=True, include_all=True, all_value=".*"),
        "box": Variable("box", selected="it's"),
    }
    for name, value in selected.items():
        variables[name].selected = value
    return variables


def test_postgres_time_macros_match_grafana() -> None:
    assert expand_sql("WHERE $__timeFilter(time_column)", {}, RANGE) == (
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )
    assert expand_sql("select $__timeFrom(), $__timeTo()", {}, RANGE) == (
        "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'"
    )
    assert expand_sql("GROUP BY $__timeGroup(time_column,'5m')", {}, RANGE) == (
        "GROUP BY floor(extract(epoch from time_column)/300)*300"
    )
    assert expand_sql("SELECT $__timeGroupAlias(time_column, 1d)", {}, RANGE) == (
        'SELECT floor(extract(epoch from time_column)/86400)*86400 AS "time"'
    )
    # pre-5.3 form: a comma right after $__timeGroup adds the alias
    assert expand_sql("SELECT $__timeGroup(t, 5m), v", {}, RANGE) == (
        'SELECT floor(extract(epoch from t)/300)*300 AS "time", v'
    )
    assert expand_sql("WHERE $__unixEpochFilter(c)", {}, RANGE) == "WHERE c >= 1523556000 AND c <= 1523556300"
    assert (
        expand_sql("$__timeGroupAlias(t, 30d)", {}, RANGE)
        == 'floor(extract(epoch from t)/2.592e+06)*2.592e+06 AS "time"'
    )


def test_unknown_macros_and_variables_are_errors() -> None:
    with pytest.raises(MacroError, match="unknown macro"):
        expand_sql("SELECT $__nope(x)", {}, RANGE)
    with pytest.raises(MacroError, match=r"\$missing"):
        expand_sql("SELECT '$missing'", {}, RANGE)


def test_sql_variables_regex_format_and_all_value() -> None:
    sql = "project ~ '^(${project:regex})$'"
    assert expand_sql(sql, dims(), RANGE) == "project ~ '^(.*)$'"  # All: the custom all value, unformatted
    assert expand_sql(sql, dims(project=["shop"]), RANGE) == "project ~ '^(shop)$'"
    assert expand_sql(sql, dims(project=["a.b", "c"]), RANGE) == r"project ~ '^((a\.b|c))$'"
    assert expand_sql("IN (${project:singlequote})", dims(project=["a", "b"]), RANGE) == "IN ('a','b')"
    assert expand_sql("IN ($project)", dims(project=["a", "o'k"]), RANGE) == "IN ('a','o''k')"
    assert expand_sql("user = '${box}'", dims(), RANGE) == "user = 'it''s'"  # single value: quotes doubled


def test_prometheus_builtins_and_variables() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    q = expand_promql(
        'rate(x{project=~"$project"}[$__rate_interval]) [$__range] $__interval',
        dims(project=["a.b", "c"]),
        panel_range("now-15m", now),
        instant=False,
        scrape_interval_s=15,
    )
    assert q.expr == 'rate(x{project=~"(a\\\\.b|c)"}[60s]) [900s] 15s'  # 4 x scrape interval; regex-escaped
    assert q.step == 15 and q.end == now.timestamp() and q.start == now.timestamp() - 900
    assert expand_promql('x{p=~"$project"}', dims(), RANGE, instant=True, scrape_interval_s=1).expr == 'x{p=~".*"}'


def test_relative_times_and_intervals() -> None:
    now = datetime(2024, 5, 16, 13, 45, 10, tzinfo=timezone.utc)  # a Thursday
    assert parse_time("now/d", now) == datetime(2024, 5, 16, tzinfo=timezone.utc)
    assert parse_time("now/w", now) == datetime(2024, 5, 13, tzinfo=timezone.utc)  # weeks start Monday
    assert parse_time("now/M", now) == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert parse_time("now-30d", now) == datetime(2024, 4, 16, 13, 45, 10, tzinfo=timezone.utc)
    assert panel_range("now-7d", now, "now/d").start == datetime(2024, 5, 16, tzinfo=timezone.utc)
    assert panel_range("now-7d", now, "30d").start == parse_time("now-30d", now)
    assert format_duration(interval_seconds(panel_range("now-30d", now), 60)) == "30m"  # 2592 s, rounded
    assert format_duration(interval_seconds(panel_range("now-5m", now), 60)) == "1m"
    assert ALL == "$__all"
