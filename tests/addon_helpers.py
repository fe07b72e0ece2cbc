"""Drive the Sheets add-on the way Google does: signed requests, real-shaped events, and
the next request taken from the action URLs of the card just returned.

Every answer is checked against Google's own messages: the card with
``google.apps.card_v1.Card`` (protobuf ``json_format``, unknown fields fail) and the
action envelope around it with the shapes the HTTP runtime accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.apps.card_v1 import Card
from google.protobuf import json_format

PUBLIC_URL = "https://sync.example.test"
ADDON_ACCOUNT = "service-123456789@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"
CLIENT_ID = "123456789-abc.apps.googleusercontent.com"


def validate_card(card: dict[str, Any]) -> None:
    json_format.ParseDict(card, Card.pb()(), ignore_unknown_fields=False)


def validate_response(body: dict[str, Any]) -> dict[str, Any] | None:
    """Check the envelope and its card; return the card (None for a host action)."""
    assert isinstance(body, dict) and len(body) == 1, body
    if "action" in body:  # a homepage/trigger answer
        assert set(body["action"]) == {"navigations"}, body
        (nav,) = body["action"]["navigations"]
        assert set(nav) == {"pushCard"}, nav
        validate_card(nav["pushCard"])
        return nav["pushCard"]
    render = body["renderActions"]
    assert set(render) <= {"action", "hostAppAction"} and len(render) == 1, render
    if "hostAppAction" in render:
        assert render["hostAppAction"] == {
            "editorAction": {"requestFileScopeForActiveDocument": {}}
        }, render
        return None
    act = render["action"]
    assert set(act) <= {"navigations", "notification"}, act
    if "notification" in act:
        assert set(act["notification"]) == {"text"} and act["notification"]["text"]
    (nav,) = act["navigations"]
    assert set(nav) == {"updateCard"}, nav
    validate_card(nav["updateCard"])
    return nav["updateCard"]


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def find_button(card: dict[str, Any], text: str) -> dict[str, Any] | None:
    for node in _walk(card):
        if node.get("text") == text and "onClick" in node:
            return node
    return None


def card_text(card: dict[str, Any]) -> str:
    """Everything a person reads on the card, in order."""
    parts: list[str] = []
    for node in _walk(card):
        for key in ("title", "subtitle", "header", "text", "topLabel", "bottomLabel", "label",
                    "hintText"):
            if isinstance(node.get(key), str):
                parts.append(node[key])
    return "\n".join(parts)


def inputs_of(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for node in _walk(card):
        for kind in ("textInput", "selectionInput"):
            widget = node.get(kind)
            if isinstance(widget, dict) and "name" in widget:
                found[widget["name"]] = widget
    return found


def shown_values(card: dict[str, Any]) -> dict[str, list[str]]:
    """What the form inputs hold as rendered (what Google would send back untouched)."""
    values: dict[str, list[str]] = {}
    for name, widget in inputs_of(card).items():
        if "items" in widget:
            values[name] = [i["value"] for i in widget["items"] if i.get("selected")]
        else:
            values[name] = [widget["value"]] if widget.get("value") else []
    return values


@dataclass
class Person:
    sub: str
    email: str
    oauth_token: str


@dataclass
class Sidebar:
    """One person's sidebar in one spreadsheet."""

    client: Any
    signer: Any
    person: Person
    spreadsheet_id: str
    title: str = "Team metrics"
    file_scope: bool = False
    timezone: str = "Europe/Berlin"
    card: dict[str, Any] | None = None
    notification: str | None = None
    last_status: int = 0
    last_body: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def event(self, parameters: dict[str, str] | None = None,
              form: dict[str, list[str]] | None = None, *,
              user_token: str | None = None) -> dict[str, Any]:
        common: dict[str, Any] = {
            "hostApp": "SHEETS", "platform": "WEB", "userLocale": "en",
            "timeZone": {"id": self.timezone, "offset": 3600000},
        }
        if parameters:
            common["parameters"] = parameters
        if form:
            common["formInputs"] = {k: {"stringInputs": {"value": v}} for k, v in form.items()}
        sheets: dict[str, Any] = {"addonHasFileScopePermission": self.file_scope}
        if self.file_scope:
            # Google names the open file only once the add-on may see it.
            sheets.update({"id": self.spreadsheet_id, "title": self.title})
        auth = {
            "systemIdToken": "unused-by-http-endpoints",
            "userIdToken": user_token if user_token is not None else self.signer.user_token(
                CLIENT_ID, self.person.sub, self.person.email),
        }
        if self.file_scope:
            auth["userOAuthToken"] = self.person.oauth_token
        return {"commonEventObject": common, "authorizationEventObject": auth,
                "sheets": sheets}

    def post(self, url: str, event: dict[str, Any], *, bearer: str | None = None) -> Any:
        assert url.startswith(PUBLIC_URL + "/addon/"), url
        path = url[len(PUBLIC_URL):]
        token = bearer if bearer is not None else self.signer.system_token(url, ADDON_ACCOUNT)
        response = self.client.post(path, json=event,
                                    headers={"Authorization": f"Bearer {token}"})
        self.last_status = response.status_code
        self.last_body = response.get_json(silent=True)
        return response

    def _take(self, response: Any) -> dict[str, Any] | None:
        assert response.status_code == 200, (response.status_code, response.get_data(True))
        body = response.get_json()
        card = validate_response(body)
        self.notification = (
            body.get("renderActions", {}).get("action", {}).get("notification", {}).get("text")
        )
        if card is not None:
            self.card = card
            self.history.append(card)
        return body

    def open(self) -> dict[str, Any] | None:
        """Extensions → sheets-sync: the homepage trigger."""
        return self._take(self.post(f"{PUBLIC_URL}/addon/homepage", self.event()))

    def grant_file_scope(self) -> dict[str, Any] | None:
        """The person allows access to this file; Google calls onFileScopeGrantedTrigger."""
        self.file_scope = True
        return self._take(self.post(f"{PUBLIC_URL}/addon/file-scope-granted", self.event()))

    def press(self, text: str, **typed: str | list[str]) -> dict[str, Any] | None:
        """Click the button reading ``text`` on the current card, with the form as shown
        plus what was ``typed`` (Google sends every input's current value)."""
        assert self.card is not None
        found = find_button(self.card, text)
        assert found is not None, f"no button {text!r} on the card:\n{card_text(self.card)}"
        act = found["onClick"]["action"]
        params = {p["key"]: p["value"] for p in act.get("parameters", [])}
        form = shown_values(self.card)
        for name, value in typed.items():
            form[name] = value if isinstance(value, list) else [value]
        form = {k: v for k, v in form.items() if v}
        return self._take(self.post(act["function"], self.event(params, form)))

    def buttons_in_section(self, header: str) -> list[str]:
        assert self.card is not None
        for section in self.card["sections"]:
            if section.get("header") == header:
                return [b["text"] for node in _walk(section) for b in
                        node.get("buttonList", {}).get("buttons", [])]
        raise AssertionError(f"no section {header!r}")

    @property
    def text(self) -> str:
        assert self.card is not None
        return card_text(self.card)
