"""Click's own usage errors follow API.md too: one line on stderr, no usage page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Runner, assert_one_line_error


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ([], ("Missing command", "ledgerflow --help")),
        (["frobnicate"], ("No such command 'frobnicate'",)),
        (["show"], ("Missing argument 'UUID'", "ledgerflow show --help")),
        (["resume"], ("Missing argument",)),
        (["copy"], ("Missing argument 'SRC_URI'",)),
        (["copy", "memory://"], ("Missing argument 'DST_URI'",)),
        (["show", "a", "b"], ("unexpected extra argument",)),
        (["books", "--limit", "abc"], ("'--limit'", "abc")),
        (["books", "--limit", "0"], ("'--limit'",)),
        (["books", "--state", "NOPE"], ("'--state'",)),
        (["books", "--bogus"], ("No such option '--bogus'",)),
        (["--bogus", "books"], ("No such option '--bogus'",)),
        (["--backend"], ("'--backend' requires an argument",)),
    ],
)
def test_bad_command_lines_are_one_line_usage_errors(
    any_cli: Runner, args: list[str], fragments: tuple[str, ...]
) -> None:
    outcome = any_cli(*args)
    assert_one_line_error(outcome, 2, *fragments)
    assert "Usage:" not in outcome.stderr


def test_help_is_still_a_page(cli: Runner) -> None:
    outcome = cli("--help")
    assert outcome.exit_code == 0
    assert "books" in outcome.stdout and "copy" in outcome.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["books"],
        ["books", "--json"],
        ["show", "abc"],
        ["resume", "abc"],
    ],
)
def test_a_bad_uri_option_is_an_error_even_when_the_store_is_missing(
    cli: Runner, tmp_path: Path, args: list[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'absent.db'}?synchronous=bogus"
    assert_one_line_error(cli("--backend", uri, *args), 2, "synchronous", "bogus")
    assert_one_line_error(
        cli("copy", uri, f"sqlite:///{tmp_path / 'dst.db'}"), 2, "synchronous", "bogus"
    )
    assert not list(tmp_path.iterdir())


def test_an_unparsable_uri_names_itself(any_cli: Runner) -> None:
    outcome = any_cli("--backend", "postgresql://postgres@[::1/x", "books")
    assert_one_line_error(outcome, 2, "bad backend URI 'postgresql://postgres@[::1/x'")
