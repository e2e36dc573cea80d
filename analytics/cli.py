"""`analytics` command line: parse the arguments and the settings, call the service, print, exit. No logic of its
own."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import msgspec

from analytics import service
from analytics.config import ConfigError, Durability, Role, Settings, describe, load_settings
from analytics.dev.embedded import EmbeddedError
from analytics.errors import AnalyticsError
from analytics.events.contract import EPOCH
from analytics.events.record import decode_queued
from analytics.observability import logs
from analytics.queue.dead_letters import DeadLetter
from analytics.store.shares import ShareLink


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics", description=__doc__)
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="settings file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the api, the writer, or both")
    serve.add_argument("--role", choices=[role.value for role in Role], help=describe("role"))
    serve.add_argument("--host", help=describe("host"))
    serve.add_argument("--port", help=describe("port"))
    serve.add_argument("--workers", help=describe("workers"))
    serve.add_argument("--durability", choices=[mode.value for mode in Durability], help=describe("durability"))
    serve.add_argument(
        "--no-migrate", dest="migrate", action="store_false", default=None, help=describe("migrate") + "; skip it"
    )
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    dead = commands.add_parser("dead-letters", help="inspect or operate the records the writer could not store")
    dead.add_argument("action", choices=["list", "requeue", "purge"], help="list them, send them back, or drop them")
    dead.add_argument("--limit", type=int, default=100, help="most entries `list` prints (default: %(default)s)")
    share = commands.add_parser("share", help="read-only dashboard links to one site: create, list or revoke them")
    actions = share.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new link; its token is shown once, never stored")
    create.add_argument("--site", required=True, help="the site the link shows")
    create.add_argument(
        "--base-url",
        help="this service's address as viewers reach it, to print the whole link (default: http://HOST:PORT)",
    )
    actions.add_parser("list", help="every link, one JSON object a line (no tokens: only their digests are kept)")
    revoke = actions.add_parser("revoke", help="stop a link working, on every api process at once")
    revoke.add_argument("id", type=int, help="the link's id, as `create` and `list` print it")
    erase = commands.add_parser(
        "erase", help="remove a user's events on a site, or a whole site, and everything counted from them"
    )
    erase.add_argument("--site", required=True, help="the site to erase in")
    whom = erase.add_mutually_exclusive_group(required=True)
    whom.add_argument("--user", help="the user_id whose every event on the site is removed")
    whom.add_argument(
        "--all", action="store_true", help="every row of the site: events, rollups, visits and share links"
    )
    return parser


def _fail(message: str, code: int) -> NoReturn:
    print(f"analytics: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _dead_letter_json(shard: int, letter: DeadLetter) -> str:
    entry: dict[str, Any] = {"shard": shard, "failed_at": letter.failed_at.isoformat(), "reason": letter.reason}
    try:
        event = decode_queued(letter.data)
        entry["event"] = {
            "site_id": event.site_id,
            "event_type": event.event_type,
            "path": event.path,
            "user_id": event.user_id,
            "timestamp": (EPOCH + timedelta(microseconds=event.ts_us)).isoformat(),
        }
    except (msgspec.DecodeError, msgspec.ValidationError, OverflowError):
        entry["data_base64"] = base64.b64encode(letter.data).decode()
    return json.dumps(entry, ensure_ascii=False)


def _print_dead_letters(action: str, outcome: list[tuple[int, DeadLetter]] | int) -> None:
    if isinstance(outcome, int):
        print(f"{'requeued' if action == 'requeue' else 'purged'} {outcome} record(s)")
    else:
        for shard, letter in outcome:
            print(_dead_letter_json(shard, letter))


def _share_json(link: ShareLink) -> str:
    revoked = link.revoked_at.isoformat() if link.revoked_at else None
    entry = {"id": link.id, "site_id": link.site_id, "created_at": link.created_at.isoformat(), "revoked_at": revoked}
    return json.dumps(entry, ensure_ascii=False)


def _share(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "create":
        link, token = service.create_share_link(settings, args.site)
        base_url = args.base_url or f"http://{settings.host}:{settings.port}"
        print(f"{base_url.rstrip('/')}/share/{token}")
        print(f"share link {link.id} for site {link.site_id}: keep it, the token is not stored", file=sys.stderr)
    elif args.action == "list":
        for link in service.share_links(settings):
            print(_share_json(link))
    else:
        revoked = service.revoke_share_link(settings, args.id)
        if revoked is None:
            _fail(f"no share link {args.id}", 1)
        print(f"share link {revoked.id} of site {revoked.site_id} revoked at {revoked.revoked_at}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    # A flag is its environment twin with the last word: one parser, one validation, one kind of error message.
    flags = {
        "ANALYTICS_ROLE": getattr(args, "role", None),
        "HOST": getattr(args, "host", None),
        "PORT": getattr(args, "port", None),
        "ANALYTICS_WORKERS": getattr(args, "workers", None),
        "ANALYTICS_DURABILITY": getattr(args, "durability", None),
        "ANALYTICS_MIGRATE": None if getattr(args, "migrate", None) is None else "false",
    }
    environ = {**os.environ, **{name: value for name, value in flags.items() if value is not None}}
    try:
        settings = load_settings(environ, env_file=args.env_file)
    except ConfigError as error:
        _fail(str(error), 2)
    logs.configure(settings.log_level, settings.log_format)
    # Until the event loop installs its own handlers, SIGTERM must still unwind the stack so embedded servers stop.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if args.command == "migrate":
            applied = service.apply_migrations(settings)
            print(f"applied {len(applied)} migration(s)" if applied else "database is up to date")
            code = 0
        elif args.command == "dead-letters":
            _print_dead_letters(args.action, service.dead_letters(settings, args.action, args.limit))
            code = 0
        elif args.command == "share":
            code = _share(settings, args)
        elif args.command == "erase":
            print(service.erase(settings, args.site, args.user).summary())
            code = 0
        else:
            code = service.serve(settings)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as error:
        _fail(str(error), 2)
    except (OSError, EmbeddedError, AnalyticsError) as error:
        _fail(str(error), 1)
    raise SystemExit(code)
