"""``ledgerflow flows``: flow runs newest first, with state, owner and duration."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import click

import ledgerflow as lf
from ledgerflow import states
from ledgerflow.cli import listing, render
from ledgerflow.cli.app import App, has_records, local_store_missing
from ledgerflow.cli.render import Text
from ledgerflow.history import MAX_PAGE, FlowSummary, History

__all__ = ["flows", "parse_duration"]

#: Flows a terminal shows without --limit or --all.
TERMINAL_PAGE = 20
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> timedelta:
    """'30s', '15m', '2h', '7d' as a timedelta; ValueError naming a bad one."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"bad duration {text!r}: use a number and s, m, h or d (e.g. 2h)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A click parameter for durations ('2h')."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        """Parse the value, or fail with click's usage error."""
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.option(
    "--state",
    type=click.Choice(sorted(states.FLOW_STATES), case_sensitive=False),
    help="Only flows in this state.",
)
@click.option("--name", help="Only flows with exactly this name.")
@click.option("--since", type=DurationType(), help="Only flows created this long ago or later.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many flows.")
@click.option("--all", "show_all", is_flag=True, help="Every flow, at a terminal too.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def flows(
    app: App,
    state: str | None,
    name: str | None,
    since: timedelta | None,
    limit: int | None,
    show_all: bool,
    as_json: bool,
) -> None:
    """List flow runs newest first, with state, owner and duration."""
    interactive = render.at_a_terminal(app.out)
    if limit is None and interactive and not as_json and not show_all:
        limit = TERMINAL_PAGE
    after = datetime.now(UTC) - since if since is not None else None
    filters: dict[str, Any] = {
        "state": state.upper() if state else None,
        "name": name,
        "since": after,
    }
    if local_store_missing(app.backend_uri):
        _nothing(app, as_json, f"no flows: {app.safe_uri} does not exist yet")
        return
    with app.read() as conn:
        if not has_records(conn):
            _nothing(app, as_json, f"no flows: {app.safe_uri} holds no logbooks")
            return
        history = History(conn)
        try:
            found: list[FlowSummary | lf.CorruptRecordError] = list(
                _iter_flows(history, limit, filters)
            )
        except lf.CorruptRecordError:  # list flow by flow, each corrupt one as such
            found = listing.flows_around_corruption(
                history, conn.count_flows(**filters), limit, filters
            )
        total = conn.count_flows(**filters) if found or any(filters.values()) else 0
        everything = conn.count_flows()
    corrupt = sum(isinstance(item, lf.CorruptRecordError) for item in found)
    if as_json:
        entries = [listing.entry_json(item) for item in found]
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        listing.fail_if_corrupt(corrupt)
        return
    if not found:
        app.out.print(_empty_message(filters, since, everything, app.safe_uri))
        return
    lines = [Text(f"{'UUID':36}  {'CREATED (UTC)':19}  NAME  STATE  DURATION  OWNER", style="bold")]
    lines = lines if interactive else []
    lines.extend(listing.entry_line(item, _flow_line) for item in found)
    if interactive:
        footer = f"flows 1-{len(found)} of {total}"
        if len(found) < total:
            footer += f"; {total - len(found)} more: --limit N or --all"
        lines.append(Text(footer, style="dim"))
    render.emit(app.out, lines)
    listing.fail_if_corrupt(corrupt)


def _nothing(app: App, as_json: bool, message: str) -> None:
    if as_json:
        click.echo("[]")
    else:
        app.out.print(message)


def _empty_message(
    filters: Mapping[str, Any], since: timedelta | None, everything: int, where: str
) -> str:
    parts = []
    if filters["name"] is not None:
        parts.append(f"named {filters['name']!r}")
    if filters["state"] is not None:
        parts.append(f"in state {filters['state']}")
    if since is not None:
        parts.append(f"created in the last {render.format_duration(since.total_seconds())}")
    what = f"no flows {' '.join(parts)}" if parts else "no flows"
    return f"{what} ({everything} flow{'s' if everything != 1 else ''} in all) in {where}"


def _iter_flows(
    history: History, limit: int | None, filters: Mapping[str, Any]
) -> Iterator[FlowSummary]:
    cursor: str | None = None
    left = limit
    while left is None or left > 0:
        size = MAX_PAGE if left is None else min(left, MAX_PAGE)
        page = history.flows(limit=size, after=cursor, count=False, **filters)
        yield from page.items
        if left is not None:
            left -= len(page.items)
        if page.next is None:
            return
        cursor = page.next


def _flow_line(item: FlowSummary) -> Text:
    flow = item.flow
    line = Text(f"{flow.uuid:36}  ")
    line.append(flow.created_at.strftime("%Y-%m-%d %H:%M:%S"), style="dim")
    line.append("  ")
    line.append(flow.name, style="cyan")
    line.append("  ")
    line.append_text(render.state_text(flow.state))
    line.append(f"  {render.format_duration(item.duration) or '-'}")
    lease = item.lease
    line.append(f"  {lease.owner or '-'}", style="dim")
    if lease.owner is not None and lease.status != "held":
        line.append(f" ({lease.describe().split(': ', 1)[-1]})", style="yellow")
    return line
