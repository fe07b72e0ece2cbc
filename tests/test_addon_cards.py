"""The deployment resource and the cards, checked against Google's own message types."""

from __future__ import annotations

import json

import pytest
from google.cloud.gsuiteaddons_v1.types import Deployment
from google.protobuf import json_format

from sheets_sync.addon_deployment import OAUTH_SCOPES
from sheets_sync.cli.main import main
from tests.addon_helpers import validate_card, validate_response
from web.addon import cards


def _deployment(capsys, *args: str) -> dict:
    assert main(["addon", "deployment", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _run_functions(value) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "runFunction"] + [
            f for v in value.values() for f in _run_functions(v)]
    return []


def test_the_deployment_resource_is_a_valid_deployment_with_absolute_urls(capsys):
    resource = _deployment(capsys, "--base-url", "https://sync.example.com/")
    parsed = json_format.ParseDict(resource, Deployment.pb()(), ignore_unknown_fields=False)
    assert parsed.add_ons.common.name == "sheets-sync"
    assert parsed.add_ons.sheets.homepage_trigger.run_function == (
        "https://sync.example.com/addon/homepage")
    assert parsed.add_ons.sheets.on_file_scope_granted_trigger.run_function == (
        "https://sync.example.com/addon/file-scope-granted")
    assert parsed.add_ons.common.logo_url.startswith("https://sync.example.com/")
    assert sorted(_run_functions(resource)) == sorted([
        "https://sync.example.com/addon/homepage",
        "https://sync.example.com/addon/homepage",
        "https://sync.example.com/addon/file-scope-granted",
    ])
    assert list(parsed.oauth_scopes) == list(OAUTH_SCOPES)
    assert "https://www.googleapis.com/auth/drive.file" in parsed.oauth_scopes
    # The full drive scope would let the add-on read every file the person has.
    assert "https://www.googleapis.com/auth/drive" not in parsed.oauth_scopes


def test_the_base_url_defaults_to_the_public_url(capsys, monkeypatch):
    monkeypatch.setenv("SHEETS_SYNC_PUBLIC_URL", "https://public.example.com")
    resource = _deployment(capsys)
    assert resource["addOns"]["common"]["homepageTrigger"]["runFunction"] == (
        "https://public.example.com/addon/homepage")


def test_a_bad_base_url_is_one_line(capsys):
    assert main(["addon", "deployment", "--base-url", "sync.example.com"]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_the_validator_catches_a_misspelled_field():
    card = cards.intro_card(cards.Urls("https://x.example"), has_file_access=True)
    validate_card(card)
    card["sections"][0]["widgets"][0]["textParagraph"]["txt"] = "typo"
    with pytest.raises(json_format.ParseError):
        validate_card(card)


def test_every_builder_makes_valid_cards_and_escapes_peoples_text():
    urls = cards.Urls("https://x.example")
    view = cards.ConnectionView(
        id=7, name="<script>alert(1)</script>", tab_title="Steps & <b>co</b>",
        tab_url="https://docs.google.com/spreadsheets/d/abc/edit#gid=5", last_synced="",
        status="Failed", rows_written=1234, next_refresh="Paused", error="boom",
        paused="Paused by its owner", active=False, owned=True,
        service_account="sa@example.iam.gserviceaccount.com", share_problem="Cannot share",
    )
    built = [
        cards.intro_card(urls, has_file_access=False, message="x", offer_link=True),
        cards.connect_form_card(urls, cards.FormValues(campaign_ids=["c1"], key_hint="…3f9a",
                                                       key_token="sealed"),
                                campaigns=[("c1", "Q1 <outbound>")], error="bad key"),
        cards.connect_form_card(urls, cards.FormValues(connection_id="7")),
        cards.status_card(urls, [view], offer_link=True, message="hello"),
        cards.delete_card(urls, 7, "<i>x</i>"),
        cards.link_card(urls, "https://x.example/link-google/t", "ABCD-EFGH", "a@example.com",
                       "now"),
        cards.message_card(urls, "done"),
    ]
    for card in built:
        validate_card(card)
        validate_response(cards.update(card, "note"))
        validate_response(cards.push(card))
    validate_response(cards.request_file_scope())
    text = json.dumps(built)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Q1 <outbound>" in text  # selection items are plain text, not HTML
    actions = [a for a in _functions(built)]
    assert actions and all(a.startswith("https://x.example/addon/") for a in actions)


def _functions(value) -> list[str]:
    if isinstance(value, dict):
        found = [value["function"]] if isinstance(value.get("function"), str) else []
        return found + [f for v in value.values() for f in _functions(v)]
    if isinstance(value, list):
        return [f for v in value for f in _functions(v)]
    return []
