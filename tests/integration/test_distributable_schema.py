"""The schema stays distributable by `site_id` (Citus, docs/scaling.md), checked without Citus, which cannot run in CI:
on the migrated schema, every primary, unique and exclusion key of a distributed table holds `site_id`; in the named
SQL, every distributed table a statement reads or changes is restricted by `site_id`, stats statements by a parameter
(so Citus routes them to one shard), and every conflict target holds `site_id`.

The query rule reads text, not a parse tree, so it is deliberately simple. Per statement (`--` comments removed, split
at `;`; no string literal in these files holds either), each distributed table after FROM, JOIN, UPDATE or USING, and
each call of a migration function that changes `events` for every site, must be restricted: `<t>.site_id = $n`,
`<t>.site_id = <other>.site_id` (a colocated join, either way round) or `<t>.site_id IN (`, where `<t>` is the table's
alias, or its name when it has none; an unaliased table may also be restricted unqualified (`site_id = $n`,
`site_id IN (`, `(site_id, ...) IN (`). An INSERT's target is not a read: every row carries its `site_id` (NOT NULL in
every distributed table) and goes to that site's shard; what the INSERT selects from is checked like any read, and an
upsert's conflict target must name `site_id` (a target-less DO NOTHING arbitrates on every unique key of the table,
which the catalog check covers). `LOCK TABLE` reads no rows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from analytics.stats.params import PROP_KEYS, Filter, parse_report_query
from analytics.stats.periods import DateRange
from analytics.stats.reports import Statement, event_metrics_sql, visit_metrics_sql
from analytics.store import queries

# docs/scaling.md says why each table is in its group; a new table must join one (test_every_table_is_classified).
DISTRIBUTED: Final = (
    "events",
    "event_keys",
    "visits",
    "site_visit_bounds",
    "report_cells",
    "report_distincts",
    "report_values",
    "report_value_days",
    "report_value_weeks",
    "report_value_weeks_kept",
    "report_value_counts",
    "daily_totals",
    "daily_users",
    "daily_path_views",
    "site_totals",
    "site_users",
    "site_path_views",
)
REFERENCE: Final = ("share_links", "events_retention")
LOCAL: Final = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")
# migrations/0010.partitioned_events.sql: they read and change `events` and `event_keys` of every site.
MAINTENANCE_FUNCTIONS: Final = ("ensure_events_partition", "drop_events_before")

# Statements that read distributed tables of every site on purpose; each must still break the rule (or it goes).
EXCEPTIONS: Final = {
    "sites.sql:sites_with_data": "the dashboard's site picker lists every site: one site_totals row per site, a "
    "multi-shard scan of the smallest rollup",
    "partitions.sql:ensure_partition": "makes a month's partition for every site (DDL through the coordinator) and "
    "moves that month's rows of every site out of events_default",
    "partitions.sql:drop_before": "retention drops whole months of every site, with their keys",
    "keeper.sql:day_sites_to_keep": "the distinct keeper, in the background, finds the sites with a past day to count "
    "by a skip scan of every site's report cells: a multi-shard read of the cells' key",
    "keeper.sql:week_sites_to_keep": "the distinct keeper, in the background, finds the sites with a week of kept days "
    "to sum: a multi-shard read of the days kept (a row per site-day, no hashes)",
}
# Files whose statements answer stats requests: each must name one site by a parameter, so it goes to one shard.
STATS_FILES: Final = ("stats.sql", "reports.sql")
SCALING_DOC: Final = Path(__file__).parents[2] / "docs" / "scaling.md"

TABLES_SQL: Final = """
SELECT array_agg(relname::text ORDER BY relname) FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition
"""
# A table and its partitions (pg_partition_tree lists none of a table that is not partitioned). The key columns
# proper: INCLUDE columns and expressions are no part of it (Citus needs the column itself).
KEYS_SQL: Final = """
SELECT i.indexrelid::regclass::text AS key,
       array(SELECT a.attname::text
             FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS columns
FROM unnest($1::text[]) AS d(name)
CROSS JOIN LATERAL (SELECT d.name::regclass UNION SELECT relid FROM pg_partition_tree(d.name::regclass)) AS t(relid)
JOIN pg_index i ON i.indrelid = t.relid
WHERE i.indisprimary OR i.indisunique OR i.indisexclusion
ORDER BY 1
"""
# Colocated tables need one distribution column type and collation; Citus refuses rows with a NULL one.
SITE_COLUMNS_SQL: Final = """
SELECT t.relid::regclass::text AS relation, format_type(a.atttypid, a.atttypmod) AS type,
       c.collname::text AS collation, a.attnotnull AS not_null
FROM unnest($1::text[]) AS d(name)
CROSS JOIN LATERAL (SELECT d.name::regclass UNION SELECT relid FROM pg_partition_tree(d.name::regclass)) AS t(relid)
LEFT JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'site_id' AND NOT a.attisdropped
LEFT JOIN pg_collation c ON c.oid = a.attcollation
"""

_TABLE_NAMES: Final = "|".join([*DISTRIBUTED, r"events_(?:default|\d{4}_\d{2})"])
_NOT_ALIASES: Final = (
    "WHERE|ON|USING|SET|JOIN|LEFT|RIGHT|INNER|CROSS|FULL|NATURAL|GROUP|ORDER|LIMIT|OFFSET|RETURNING|WINDOW|UNION"
    "|EXCEPT|INTERSECT|HAVING|FOR|TABLESAMPLE"
)
_READ: Final = re.compile(
    rf"\b(?:FROM|JOIN|UPDATE|USING)\s+(?:ONLY\s+)?(?P<table>{_TABLE_NAMES})\b"
    rf"(?:\s+(?:AS\s+)?(?!(?:{_NOT_ALIASES})\b)(?P<alias>[a-z_]\w*))?",
    re.IGNORECASE,
)
_CALL: Final = re.compile(rf"\b({'|'.join(MAINTENANCE_FUNCTIONS)})\s*\(", re.IGNORECASE)
_CONFLICT: Final = re.compile(r"\bON\s+CONFLICT\b(?P<target>.*?)\bDO\s+(?:NOTHING|UPDATE)\b", re.IGNORECASE | re.DOTALL)
_SITE_VALUE: Final = r"(?:\$\d+|\w+\.site_id\b)"
_ROUTED: Final = re.compile(r"\bsite_id\s*=\s*\$\d+", re.IGNORECASE)
_UNQUALIFIED: Final = (
    re.compile(rf"(?<![\w.])site_id\s*(?:=\s*{_SITE_VALUE}|IN\s*\()", re.IGNORECASE),
    re.compile(r"\(\s*site_id\s*,[^()]*\)\s*IN\s*\(", re.IGNORECASE),
)
_STATEMENT_START: Final = re.compile(r"^\s*(?:SELECT|WITH)\b", re.IGNORECASE)


def statements(query: str) -> list[str]:
    text = re.sub(r"--[^\n]*", "", query)
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def _restricted(statement: str, qualifier: str, unqualified: bool) -> bool:
    name = re.escape(qualifier)
    qualified = (
        rf"\b{name}\.site_id\s*(?:=\s*{_SITE_VALUE}|IN\s*\()",
        rf"\b\w+\.site_id\s*=\s*{name}\.site_id\b",
    )
    if any(re.search(pattern, statement, re.IGNORECASE) for pattern in qualified):
        return True
    return unqualified and any(pattern.search(statement) for pattern in _UNQUALIFIED)


def statement_problems(statement: str, stats: bool) -> list[str]:
    """What in one statement keeps Citus from confining it to the sites it names."""
    found = [f"{name}() reads every site" for name in _CALL.findall(statement)]
    reads = list(_READ.finditer(statement))
    for read in reads:
        table, alias = read["table"], read["alias"]
        if not _restricted(statement, alias or table, unqualified=alias is None):
            found.append(f"{table}{f' {alias}' if alias else ''} is not restricted by site_id")
    for conflict in _CONFLICT.finditer(statement):
        target = " ".join(conflict["target"].split())
        if target and not re.search(r"(?<![\w.])site_id\b", target):
            found.append(f"ON CONFLICT {target} does not hold site_id")
    if stats and reads and _STATEMENT_START.match(statement) and not _ROUTED.search(statement):
        found.append("names no site_id = $n, so it is not routed to one shard")
    return found


def problems(named: Mapping[str, str]) -> dict[str, list[str]]:
    """By `file:name`, the queries that break the rule, with what breaks it."""
    found: dict[str, list[str]] = {}
    for key, query in named.items():
        stats = key.split(":")[0] in STATS_FILES
        broken = [problem for statement in statements(query) for problem in statement_problems(statement, stats)]
        if broken:
            found[key] = broken
    return found


def named_queries() -> dict[str, str]:
    """Every named query of analytics/store/sql, as `file:name`: a new file is checked too."""
    folder = resources.files("analytics.store").joinpath("sql")
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda entry: entry.name)
    return {
        f"{file.name}:{name}": query
        for file in files
        for name, query in queries.parse(file.read_text(encoding="utf-8")).items()
    }


async def distributed_keys(db: asyncpg.Connection) -> dict[str, list[str]]:
    """Columns of every primary, unique and exclusion key of the distributed tables and their partitions."""
    return {row["key"]: row["columns"] for row in await db.fetch(KEYS_SQL, list(DISTRIBUTED))}


def without_site_id(keys: Mapping[str, list[str]]) -> list[str]:
    return [key for key, columns in keys.items() if "site_id" not in columns]


async def unclassified_tables(db: asyncpg.Connection) -> set[str]:
    tables: list[str] = await db.fetchval(TABLES_SQL)
    return set(tables) - {*DISTRIBUTED, *REFERENCE, *LOCAL}


async def test_every_key_of_a_distributed_table_holds_site_id(db: asyncpg.Connection) -> None:
    keys = await distributed_keys(db)
    assert without_site_id(keys) == []
    assert keys == {
        "daily_path_views_pkey": ["site_id", "day", "path_md5"],
        "daily_totals_pkey": ["site_id", "day"],
        "daily_users_pkey": ["site_id", "day", "user_md5"],
        "event_keys_pkey": ["site_id", "event_key"],
        "report_cells_pkey": ["site_id", "cell"],
        "report_distincts_pkey": ["site_id", "starts", "ends"],
        "report_value_days_pkey": ["site_id", "day"],
        "report_values_key": ["site_id", "day", "dimension", "value"],
        "report_value_weeks_key": ["site_id", "week", "dimension", "value"],
        "report_value_weeks_kept_pkey": ["site_id", "week"],
        "report_value_counts_key": ["site_id", "dimension", "starts", "ends", "value"],
        "site_path_views_pkey": ["site_id", "path_md5"],
        "site_totals_pkey": ["site_id"],
        "site_visit_bounds_pkey": ["site_id"],
        "site_users_pkey": ["site_id", "user_md5"],
        "visits_pkey": ["site_id", "visitor", "started_at"],
    }


async def test_site_id_can_be_one_colocated_distribution_column(db: asyncpg.Connection) -> None:
    columns = await db.fetch(SITE_COLUMNS_SQL, list(DISTRIBUTED))
    assert {row["relation"] for row in columns} >= {*DISTRIBUTED, "events_default"}
    assert {(row["type"], row["collation"], row["not_null"]) for row in columns} == {("text", "C", True)}


async def test_every_table_is_classified(db: asyncpg.Connection) -> None:
    assert await unclassified_tables(db) == set()
    tables: list[str] = await db.fetchval(TABLES_SQL)
    assert {*DISTRIBUTED, *REFERENCE, *LOCAL} <= set(tables)


@pytest.mark.parametrize(
    ("ddl", "key"),
    [
        ("ALTER TABLE daily_totals ADD CONSTRAINT daily_totals_day_key UNIQUE (day)", "daily_totals_day_key"),
        ("CREATE UNIQUE INDEX visits_visitor ON visits (visitor, started_at) INCLUDE (site_id)", "visits_visitor"),
        ("CREATE UNIQUE INDEX site_users_lower ON site_users (lower(site_id), user_md5)", "site_users_lower"),
        ("CREATE UNIQUE INDEX events_default_key ON events_default (event_key)", "events_default_key"),
        ('ALTER TABLE events ADD PRIMARY KEY (id, "timestamp")', "events_pkey"),
    ],
)
async def test_a_key_without_site_id_is_found(db: asyncpg.Connection, ddl: str, key: str) -> None:
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(ddl)
        assert key in without_site_id(await distributed_keys(db))
    finally:
        await transaction.rollback()
    assert without_site_id(await distributed_keys(db)) == []


async def test_a_new_table_must_be_classified(db: asyncpg.Connection) -> None:
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute("CREATE TABLE site_goals (site_id text NOT NULL, goal text NOT NULL, PRIMARY KEY (goal))")
        assert await unclassified_tables(db) == {"site_goals"}
    finally:
        await transaction.rollback()


def test_every_query_restricts_distributed_tables_by_site_id() -> None:
    found = problems(named_queries())
    assert {key: broken for key, broken in found.items() if key not in EXCEPTIONS} == {}
    assert set(EXCEPTIONS) <= set(found), "an exception that keeps the rule is no exception: remove it"


@pytest.mark.parametrize(
    ("key", "query", "problem"),
    [
        ("writer.sql:added", "SELECT count(*) FROM events WHERE event_type = 'page_view'", "events is not restricted"),
        ("erasure.sql:added", "DELETE FROM daily_users WHERE day < $1", "daily_users is not restricted"),
        ("erasure.sql:added", "UPDATE site_totals AS t SET views = 0 WHERE t.views < 0", "site_totals t is not"),
        ("writer.sql:added", "INSERT INTO daily_totals SELECT site_id, day, 0, 0 FROM daily_users", "daily_users is"),
        ("partitions.sql:added", "SELECT count(*) FROM events_2026_01 WHERE path = $1", "events_2026_01 is not"),
        ("partitions.sql:added", "SELECT drop_events_before(now())", "drop_events_before() reads every site"),
        (
            "reports.sql:added",
            "SELECT count(*) FROM events e JOIN visits v ON v.visitor = e.visitor WHERE e.site_id = $1",
            "visits v is not restricted",
        ),
        (
            "writer.sql:added",
            "INSERT INTO daily_users AS r (site_id, day, user_md5) SELECT site_id, day, user_md5 FROM staging_events "
            "ON CONFLICT (day, user_md5) DO NOTHING",
            "ON CONFLICT (day, user_md5) does not hold site_id",
        ),
        (
            "writer.sql:added",
            "INSERT INTO site_totals SELECT site_id, 1, 0 FROM staging_events ON CONFLICT ON CONSTRAINT "
            "site_totals_pkey DO NOTHING",
            "ON CONFLICT ON CONSTRAINT site_totals_pkey does not hold site_id",
        ),
        (
            "stats.sql:added",
            "SELECT t.views FROM daily_totals t JOIN site_totals s ON s.site_id = t.site_id",
            "not routed to one shard",
        ),
    ],
)
def test_a_query_that_does_not_restrict_by_site_id_is_found(key: str, query: str, problem: str) -> None:
    found = problems({**named_queries(), key: f"-- added\n{query};\n"})
    assert key in found
    assert any(problem in broken for broken in found[key]), found[key]
    assert set(found) - {key} == set(EXCEPTIONS)


SPAN: Final = DateRange(date(2026, 3, 1), date(2026, 3, 31), ZoneInfo("Europe/Berlin"))
COUNTRY: Final = Filter("country", "==", ("DE",))
PATH: Final = Filter("path", "~", ("/pricing",))


@pytest.mark.parametrize(
    ("filters", "prop"),
    [
        ((), None),
        ((COUNTRY,), None),
        ((PATH,), None),
        ((COUNTRY, PATH), "source"),
        ((), "path"),
        ((), PROP_KEYS),
        ((PATH,), "props.plan"),
    ],
)
def test_assembled_reports_are_routed_to_one_shard(filters: tuple[Filter, ...], prop: str | None) -> None:
    """What stats/reports.py sends, templates spliced into templates, keeps the rule as a whole."""
    query = dataclasses.replace(parse_report_query("breakdown", {"site_id": "s", "property": "path"}), property=prop)
    query = dataclasses.replace(query, filters=filters)
    for build in (event_metrics_sql, visit_metrics_sql):
        statement = Statement("s", SPAN, [SPAN.start])
        grouped = build(query, statement)
        paged = queries.REPORTS["top_values"].format(grouped=grouped, rank="1", limit=7, offset=8)
        assert problems({"reports.sql:assembled": grouped, "reports.sql:paged": paged}) == {}


def test_the_assembled_reports_join_visits_and_events() -> None:
    """The joins above are there to be checked: by a visit dimension, events meet their visits; by an event one,
    visits meet their events."""
    base = parse_report_query("aggregate", {"site_id": "s"})
    by_visit = event_metrics_sql(dataclasses.replace(base, filters=(COUNTRY,)), Statement("s", SPAN, [SPAN.start]))
    by_event = visit_metrics_sql(dataclasses.replace(base, filters=(PATH,)), Statement("s", SPAN, [SPAN.start]))
    assert "JOIN visits v" in by_visit
    assert "FROM events e" in by_event.split("LATERAL", 1)[1]


def test_the_docs_distribute_exactly_these_tables() -> None:
    text = SCALING_DOC.read_text(encoding="utf-8")
    assert re.findall(r"create_distributed_table\('(\w+)'", text) == list(DISTRIBUTED)
    assert re.findall(r"create_reference_table\('(\w+)'", text) == list(REFERENCE)
