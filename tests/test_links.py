from __future__ import annotations

import pytest

from sheets_sync.errors import InvalidInput
from sheets_sync.links import NOT_A_SHEETS_LINK, parse_spreadsheet_url, spreadsheet_link

KEY = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"


@pytest.mark.parametrize(
    ("url", "gid"),
    [
        (f"https://docs.google.com/spreadsheets/d/{KEY}", None),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/", None),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit", None),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit?usp=sharing", None),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0", 0),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit?gid=123456", 123456),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit?gid=5#gid=5", 5),
        # The fragment follows the tab that is open; the query may be stale.
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit?gid=5#gid=7", 7),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=42&range=A1:B2", 42),
        (f"https://docs.google.com/spreadsheets/u/0/d/{KEY}/edit", None),
        (f"https://docs.google.com/spreadsheets/u/1/d/{KEY}/edit#gid=9", 9),
        (f"https://docs.google.com/u/0/spreadsheets/d/{KEY}/edit", None),
        (f"  https://DOCS.google.com/spreadsheets/d/{KEY}/edit  ", None),
        (f"https://docs.google.com/spreadsheets/d/{KEY}/edit?gid=abc", None),
    ],
)
def test_good_links(url: str, gid: int | None) -> None:
    assert parse_spreadsheet_url(url) == (KEY, gid)


def test_key_with_dash_and_underscore() -> None:
    key = "abc-DEF_123-456_789-xyz"
    assert parse_spreadsheet_url(f"https://docs.google.com/spreadsheets/d/{key}/edit") == (
        key,
        None,
    )


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        KEY,
        f"http://docs.google.com/spreadsheets/d/{KEY}/edit",
        f"ftp://docs.google.com/spreadsheets/d/{KEY}/edit",
        f"https://docs.google.com.evil.example/spreadsheets/d/{KEY}/edit",
        f"https://evil.example/docs.google.com/spreadsheets/d/{KEY}/edit",
        f"https://docs.google.com@evil.example/spreadsheets/d/{KEY}/edit",
        f"https://user@docs.google.com/spreadsheets/d/{KEY}/edit",
        f"https://docs.google.com:8443/spreadsheets/d/{KEY}/edit",
        f"https://sheets.google.com/spreadsheets/d/{KEY}/edit",
        f"https://drive.google.com/file/d/{KEY}/view",
        f"https://drive.google.com/open?id={KEY}",
        f"https://docs.google.com/document/d/{KEY}/edit",
        f"https://docs.google.com/spreadsheets/d/{KEY}.xlsx/edit",
        f"https://docs.google.com/spreadsheets/d/{KEY}$/edit",
        f"https://docs.google.com/spreadsheets/d/{KEY}%2F/edit",
        "https://docs.google.com/spreadsheets/d/short_key/edit",
        "https://docs.google.com/spreadsheets/d/../../etc/passwd/edit",
        f"https://docs.google.com/spreadsheets/d/{KEY}/edit\nX-Injected: 1",
        f"https://docs.google.com/spreadsheets/d/{KEY} /edit",
        f"javascript:alert(1)//https://docs.google.com/spreadsheets/d/{KEY}",
        "javascript:alert(document.cookie)",
        f"JaVaScRiPt://docs.google.com/spreadsheets/d/{KEY}/edit",
        f"data:text/html,https://docs.google.com/spreadsheets/d/{KEY}",
        f"//docs.google.com/spreadsheets/d/{KEY}/edit",
        f"docs.google.com/spreadsheets/d/{KEY}/edit",
        f"https://docs.google.com/spreadsheets/d/{KEY}/edit" + "x" * 3000,
    ],
)
def test_bad_links(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_spreadsheet_url(url)
    assert info.value.message == NOT_A_SHEETS_LINK
    assert info.value.code == "invalid_input"


def test_published_link_gets_its_own_message() -> None:
    url = "https://docs.google.com/spreadsheets/d/e/2PACX-1vQ0abcdefghijklmnopqrstuvwxyz/pubhtml"
    with pytest.raises(InvalidInput, match="Publish to the web"):
        parse_spreadsheet_url(url)


@pytest.mark.parametrize("value", [None, 123, b"https://docs.google.com/"])
def test_non_strings(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_spreadsheet_url(value)  # type: ignore[arg-type]


def test_spreadsheet_link_round_trips() -> None:
    assert spreadsheet_link(KEY) == f"https://docs.google.com/spreadsheets/d/{KEY}/edit"
    assert spreadsheet_link(KEY, 0) == f"https://docs.google.com/spreadsheets/d/{KEY}/edit#gid=0"
    assert parse_spreadsheet_url(spreadsheet_link(KEY, 77)) == (KEY, 77)
    with pytest.raises(InvalidInput):
        spreadsheet_link("bad key/with slash")
