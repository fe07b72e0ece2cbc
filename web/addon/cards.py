"""The add-on's cards (Google Workspace card JSON), built from small pieces.

Only this module knows the card format. Routes hand it plain views (``ConnectionView``,
``FormValues``) and the absolute action URLs; it never sees a key, a model or a request.
Text that came from people (connection and tab names, Instantly's campaign names) is
HTML-escaped: text widgets render a subset of HTML.

Field names are those of ``google.apps.card_v1.Card`` in its JSON form; the tests parse
every card emitted with protobuf's ``json_format`` (unknown fields fail).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from sheets_sync.connection_rules import SCHEDULE_LABELS
from sheets_sync.date_ranges import PRESETS

Json = dict[str, Any]

ADDON_TITLE = "sheets-sync"
CONNECT_BUTTON = "Connect this spreadsheet"
REFRESH_BUTTON = "Refresh now"
# A date range set on the web page (start to end): kept as it is by the edit form.
CUSTOM_DATES = "custom"
INTRO_TEXT = (
    "Keeps your Instantly campaign step analytics (A/B variants per email step) in a tab "
    "of this spreadsheet, refreshed on a schedule or with one click."
)

# --- actions and responses --------------------------------------------------------------


def action(url: str, params: Mapping[str, str] | None = None, *, spinner: bool = True) -> Json:
    out: Json = {"function": url}
    if params:
        out["parameters"] = [{"key": k, "value": str(v)} for k, v in params.items()]
    if spinner:
        out["loadIndicator"] = "SPINNER"
    return out


def push(card: Json) -> Json:
    """The answer to a homepage trigger."""
    return {"action": {"navigations": [{"pushCard": card}]}}


def update(card: Json, notification: str | None = None) -> Json:
    """The answer to a card action: replace the card, optionally with a toast."""
    act: Json = {"navigations": [{"updateCard": card}]}
    if notification:
        act["notification"] = {"text": notification}
    return {"renderActions": {"action": act}}


def request_file_scope() -> Json:
    """Ask the person to let the add-on see the open spreadsheet (``drive.file``)."""
    return {
        "renderActions": {
            "hostAppAction": {"editorAction": {"requestFileScopeForActiveDocument": {}}}
        }
    }


# --- widgets ----------------------------------------------------------------------------


def text(html: str) -> Json:
    return {"textParagraph": {"text": html}}


def labelled(label: str, html: str, *, bottom: str | None = None) -> Json:
    out: Json = {"decoratedText": {"topLabel": label, "text": html, "wrapText": True}}
    if bottom:
        out["decoratedText"]["bottomLabel"] = bottom
    return out


def button(label: str, on_click: Json, *, filled: bool = False) -> Json:
    out: Json = {"text": label, "onClick": on_click}
    if filled:
        out["type"] = "FILLED"
    return out


def run(url: str, params: Mapping[str, str] | None = None) -> Json:
    return {"action": action(url, params)}


def open_link(url: str) -> Json:
    return {"openLink": {"url": url}}


def buttons(*items: Json) -> Json:
    return {"buttonList": {"buttons": list(items)}}


def text_input(name: str, label: str, value: str = "", *, hint: str | None = None,
               on_change: Json | None = None) -> Json:
    out: Json = {"name": name, "label": label, "type": "SINGLE_LINE"}
    if value:
        out["value"] = value
    if hint:
        out["hintText"] = hint
    if on_change:
        out["onChangeAction"] = on_change
    return {"textInput": out}


def choice(name: str, label: str, options: Iterable[tuple[str, str]],
           selected: Iterable[str], *, kind: str = "DROPDOWN") -> Json:
    chosen = set(selected)
    items = [{"text": t, "value": v, "selected": v in chosen} for v, t in options]
    return {"selectionInput": {"name": name, "label": label, "type": kind, "items": items}}


def section(widgets: Sequence[Json], header: str | None = None, *,
            collapsible: bool = False) -> Json:
    out: Json = {"widgets": list(widgets)}
    if header:
        out["header"] = header
    if collapsible:
        out["collapsible"] = True
        out["uncollapsibleWidgetsCount"] = 1
    return out


def card(sections: Sequence[Json], *, subtitle: str | None = None, name: str = "") -> Json:
    header: Json = {"title": ADDON_TITLE}
    if subtitle:
        header["subtitle"] = subtitle
    out: Json = {"header": header, "sections": [s for s in sections if s["widgets"]]}
    if name:
        out["name"] = name
    return out


def error_text(message: str) -> Json:
    return text(f'<font color="#b3261e"><b>{escape(message)}</b></font>')


# --- the cards --------------------------------------------------------------------------


@dataclass(frozen=True)
class Urls:
    """Absolute action URLs (Google calls them with an ID token for that exact URL)."""

    base: str

    def __getattr__(self, name: str) -> str:
        # urls.connect_form -> https://…/addon/connect/form
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.base}/addon/{name.replace('__', '/').replace('_', '-')}"


def intro_card(urls: Urls, *, has_file_access: bool, message: str | None = None,
               offer_link: bool = False) -> Json:
    """A spreadsheet without connections (or one the add-on may not see yet)."""
    widgets = [text(escape(INTRO_TEXT))]
    if message:
        widgets.append(error_text(message))
    if not has_file_access:
        widgets.append(
            text("Google asks you first to let sheets-sync see this one spreadsheet.")
        )
    row = [button(CONNECT_BUTTON, run(urls.connect__start), filled=True)]
    if offer_link:
        row.append(button("Link to a web account", run(urls.link)))
    widgets.append(buttons(*row))
    return card([section(widgets)], name="intro")


@dataclass
class FormValues:
    """What the connect form shows; never the Instantly key itself."""

    name: str = ""
    worksheet_title: str = "Instantly steps"
    campaign_ids: list[str] = field(default_factory=list)
    date_preset: str = "all_time"
    schedule: str = "daily"
    schedule_time: str = "08:00"
    # Encrypted, bound to the person and the spreadsheet: the key checked a moment ago,
    # carried to Save without ever appearing in the card.
    key_token: str = ""
    key_hint: str = ""
    connection_id: str = ""


def connect_form_card(urls: Urls, values: FormValues, *,
                      campaigns: Sequence[tuple[str, str]] | None = None,
                      message: str | None = None, error: str | None = None,
                      timezone: str = "UTC") -> Json:
    """The connect (or, with ``connection_id``, edit) form."""
    params = {k: v for k, v in (("key_token", values.key_token),
                                ("connection_id", values.connection_id)) if v}
    editing = bool(values.connection_id)
    key_hint = (
        f"Checked: the key ending {values.key_hint} is kept. Type another to replace it."
        if values.key_hint
        else ("Leave empty to keep the saved key." if editing
              else "Instantly: Settings, Integrations, API Keys")
    )
    widgets: list[Json] = []
    if error:
        widgets.append(error_text(error))
    if message:
        widgets.append(text(escape(message)))
    widgets += [
        text_input("instantly_api_key", "Instantly API key", hint=key_hint,
                   on_change=action(urls.connect__check_key, params)),
        buttons(button("Check key", run(urls.connect__check_key, params))),
    ]
    picked = list(values.campaign_ids)
    if campaigns is not None:
        known = {cid for cid, _ in campaigns}
        # A picked campaign missing from the list (deleted since) stays visible.
        options = list(campaigns) + [(c, c) for c in picked if c not in known]
        if options:
            widgets.append(choice("campaign_ids", "Campaigns (none ticked = all combined)",
                                  options, picked, kind="CHECK_BOX"))
        else:
            widgets.append(text("This workspace has no campaigns yet: all campaigns combined."))
    elif picked:
        widgets.append(choice("campaign_ids", "Campaigns (none ticked = all combined)",
                              [(c, c) for c in picked], picked, kind="CHECK_BOX"))
    else:
        widgets.append(text("Campaigns: check the key to pick them (none = all combined)."))
    widgets += [
        text_input("name", "Name", values.name),
        text_input("worksheet_title", "Tab name", values.worksheet_title),
        choice("date_preset", "Date range", _date_options(values.date_preset),
               [values.date_preset]),
        choice("schedule", "Refresh", SCHEDULE_LABELS.items(), [values.schedule]),
        text_input("schedule_time", f"Time of day for daily and weekly ({timezone})",
                   values.schedule_time, hint="24-hour clock, such as 08:00"),
        buttons(
            button("Save" if editing else CONNECT_BUTTON, run(urls.connect__save, params),
                   filled=True),
            button("Cancel", run(urls.connections__status)),
        ),
    ]
    title = "Change settings" if editing else "Connect this spreadsheet"
    return card([section(widgets, title)], name="connect-form")


def _date_options(current: str) -> list[tuple[str, str]]:
    options = list(PRESETS.items())
    if current == CUSTOM_DATES:
        options.append((CUSTOM_DATES, "The dates set on the web page"))
    return options


@dataclass
class ConnectionView:
    id: int
    name: str
    tab_title: str
    tab_url: str | None
    last_synced: str  # "5 minutes ago (2026-12-02 06:00 UTC)" or ""
    status: str
    rows_written: int | None
    next_refresh: str
    error: str | None
    paused: str | None
    active: bool
    owned: bool
    service_account: str | None
    # Never refreshed, or the last refresh could not open the sheet: offer to share it.
    needs_access: bool = False
    share_problem: str | None = None
    share_ok: str | None = None


def _connection_section(urls: Urls, view: ConnectionView) -> Json:
    p = {"connection_id": str(view.id)}
    tab = escape(view.tab_title)
    widgets: list[Json] = [
        labelled("Tab", f'<a href="{escape(view.tab_url)}">{tab}</a>' if view.tab_url
                 else f"{tab} (not written yet)"),
        labelled("Last synced", escape(view.last_synced or "Never")),
        labelled("Status", escape(view.status)),
    ]
    if view.rows_written is not None:
        widgets.append(labelled("Rows written", f"{view.rows_written:,}"))
    widgets.append(labelled("Next scheduled refresh", escape(view.next_refresh)))
    if view.share_ok:
        widgets.append(text(escape(view.share_ok)))
    if view.share_problem:
        widgets.append(error_text(view.share_problem))
        if view.service_account:
            widgets.append(labelled(
                "Ask an editor to share the spreadsheet with this address, as Editor",
                f"<b>{escape(view.service_account)}</b>",
                bottom="Share (top right), paste the address, choose Editor, untick Notify.",
            ))
    if view.paused:
        widgets.append(labelled("Scheduled refreshes paused", escape(view.paused)))
    elif view.error:
        widgets.append(labelled("Last error", escape(view.error)))
    row = [button(REFRESH_BUTTON, run(urls.connections__refresh, p), filled=True)]
    if (view.needs_access or view.share_problem) and not view.share_ok:
        row.append(button("Give access", run(urls.connections__share, p)))
    widgets.append(buttons(*row))
    if view.owned:
        owner_row = [button("Change settings", run(urls.connections__edit, p))]
        if view.paused:
            owner_row.append(button("Resume", run(urls.connections__resume, p)))
        else:
            owner_row.append(button("Pause", run(urls.connections__pause, p)))
        owner_row.append(button("Delete", run(urls.connections__delete, p)))
        widgets.append(buttons(*owner_row))
    else:
        widgets.append(text("<i>Set up by a teammate: only they can change it.</i>"))
    return section(widgets, escape(view.name))


def status_card(urls: Urls, views: Sequence[ConnectionView], *,
                offer_link: bool, message: str | None = None) -> Json:
    sections: list[Json] = []
    if message:
        sections.append(section([text(escape(message))]))
    sections += [_connection_section(urls, v) for v in views]
    footer: list[Json] = [button("Refresh card", run(urls.connections__status)),
                          button("Connect another tab", run(urls.connect__form))]
    if offer_link:
        footer.append(button("Link to a web account", run(urls.link)))
    sections.append(section([buttons(*footer)]))
    return card(sections, subtitle="Instantly step analytics in this spreadsheet",
                name="status")


def delete_card(urls: Urls, connection_id: int, name: str) -> Json:
    p = {"connection_id": str(connection_id), "confirm": "yes"}
    widgets = [
        text(f"Delete <b>{escape(name)}</b>? Its tab stays in the spreadsheet as it is; "
             "refreshes stop."),
        buttons(button("Delete", run(urls.connections__delete, p), filled=True),
                button("Cancel", run(urls.connections__status))),
    ]
    return card([section(widgets, "Delete connection")], name="delete")


def link_card(urls: Urls, link_url: str, code: str, google_email: str,
              expires_utc: str) -> Json:
    widgets = [
        text(
            "Already use sheets-sync on the web? Open this link while signed in there and "
            f"type the code below, to see your connections in both places. It works once, "
            f"until {escape(expires_utc)}, for {escape(google_email)} only."
        ),
        labelled("Code (type it on the web page; never share it)", f"<b>{escape(code)}</b>"),
        buttons(button("Open the link", open_link(link_url), filled=True),
                button("Back", run(urls.connections__status))),
    ]
    return card([section(widgets, "Link to a web account")], name="link")


def message_card(urls: Urls, message: str) -> Json:
    return card([section([text(escape(message)),
                          buttons(button("Back", run(urls.connections__status)))])],
                name="message")
