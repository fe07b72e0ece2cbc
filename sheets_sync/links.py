"""Google Sheets links: accept exactly the address a person copies from the browser.

Being strict here is a safety feature: the link is stored, shown back as a hyperlink and
its key is sent to the Sheets API, so anything that is not unmistakably
``https://docs.google.com/spreadsheets/d/<key>/...`` is refused with a message that says
what to paste instead.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from sheets_sync.errors import InvalidInput

NOT_A_SHEETS_LINK = (
    "That is not a Google Sheets link. Copy the address of the sheet from your browser; "
    "it starts with https://docs.google.com/spreadsheets/d/"
)
PUBLISHED_LINK = (
    'That is a "Publish to the web" link, which is read-only. Open the sheet itself and '
    "copy the address from your browser; it starts with https://docs.google.com/spreadsheets/d/"
)

_KEY = r"[A-Za-z0-9_-]{20,200}"
_KEY_RE = re.compile(rf"^{_KEY}$")
# Optional "/u/<n>/" (signed in with several Google accounts) before or after
# "spreadsheets"; the key; then either the end or a sub-path such as /edit, /view, /.
_PATH_RE = re.compile(
    rf"^/(?:u/\d+/)?spreadsheets/(?:u/\d+/)?d/(?P<key>{_KEY})(?:/[A-Za-z0-9_./-]*)?$"
)
_PUBLISHED_RE = re.compile(r"^/(?:u/\d+/)?spreadsheets/(?:u/\d+/)?d/e/")
_MAX_URL_LENGTH = 2048


def parse_spreadsheet_url(url: str) -> tuple[str, int | None]:
    """Return ``(spreadsheet key, gid or None)`` or raise ``InvalidInput``.

    The gid is the tab the person had open; it is returned for display only. The sync
    never writes to it (it writes to its own managed tab).
    """
    if not isinstance(url, str):
        raise InvalidInput(NOT_A_SHEETS_LINK)
    url = url.strip()
    # Control characters and inner whitespace never occur in a copied address; refusing
    # them keeps header/HTML injection out of a value that is rendered back as a link.
    if not url or len(url) > _MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(NOT_A_SHEETS_LINK)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidInput(NOT_A_SHEETS_LINK) from None
    # netloc must be exactly the host: this rejects ports, "user@" tricks
    # (https://docs.google.com@evil.example/...) and look-alike hosts.
    if parts.scheme.lower() != "https" or parts.netloc.lower() != "docs.google.com":
        raise InvalidInput(NOT_A_SHEETS_LINK)
    if _PUBLISHED_RE.match(parts.path):
        raise InvalidInput(PUBLISHED_LINK)
    match = _PATH_RE.match(parts.path)
    if match is None:
        raise InvalidInput(NOT_A_SHEETS_LINK)
    # The browser keeps the fragment in step with the open tab; the query may be stale.
    gid = _gid(parts.fragment)
    if gid is None:
        gid = _gid(parts.query)
    return match.group("key"), gid


def _gid(params: str) -> int | None:
    values = parse_qs(params, keep_blank_values=False).get("gid")
    if not values:
        return None
    value = values[0]
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def spreadsheet_link(key: str, gid: int | None = None) -> str:
    """The canonical link to a spreadsheet (optionally to one tab)."""
    if not _KEY_RE.match(key):
        raise InvalidInput(NOT_A_SHEETS_LINK)
    link = f"https://docs.google.com/spreadsheets/d/{key}/edit"
    if gid is not None:
        link += f"#gid={int(gid)}"
    return link
