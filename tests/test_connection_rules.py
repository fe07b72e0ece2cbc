"""The connection vocabularies are said once: every copy (form, OpenAPI, database) agrees."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import CheckConstraint

from sheets_sync.connection_rules import (
    FEATURE_DEFAULTS,
    FEATURES,
    SCHEDULE_LABELS,
    SCHEDULES,
    features_of,
)
from sheets_sync.date_ranges import PRESETS, resolve
from sheets_sync.pipeline.refresh import Features
from sheets_sync.store import models
from web.forms import CUSTOM_RANGE, ConnectionForm
from web.openapi import build_openapi


@pytest.fixture(scope="module")
def form() -> Iterator[ConnectionForm]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", WTF_CSRF_ENABLED=False)
    with app.test_request_context():
        yield ConnectionForm()


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    return build_openapi()["components"]["schemas"]


def enum_of(schema: dict[str, Any]) -> list[str]:
    """The one ``enum`` in a property schema, whether it is nullable or not."""
    found = [s["enum"] for s in [schema, *schema.get("anyOf", [])] if "enum" in s]
    assert len(found) == 1, schema
    return found[0]


def choice_values(field: Any) -> list[str]:
    return [getattr(c, "value", c[0] if isinstance(c, tuple) else c) for c in field.choices]


def check_values(table: Any, column: str) -> list[str]:
    (constraint,) = [
        c for c in table.constraints
        if isinstance(c, CheckConstraint) and str(c.sqltext).startswith(f"{column} IN")
    ]
    return re.findall(r"'([^']*)'", str(constraint.sqltext))


def test_schedules_agree_everywhere(form: ConnectionForm, schemas: dict[str, Any]) -> None:
    expected = list(SCHEDULE_LABELS)
    assert list(SCHEDULES) == expected
    assert list(models.SCHEDULES) == expected
    assert check_values(models.Connection.__table__, "schedule") == expected
    assert choice_values(form.schedule) == expected
    for schema in ("ConnectionCreate", "ConnectionFields", "ConnectionOut"):
        assert enum_of(schemas[schema]["properties"]["schedule"]) == expected, schema


def test_date_presets_agree_everywhere(form: ConnectionForm, schemas: dict[str, Any]) -> None:
    expected = list(PRESETS)
    assert enum_of(schemas["DateRangeInput"]["properties"]["preset"]) == expected
    assert choice_values(form.date_preset) == [*expected, CUSTOM_RANGE]
    for preset in expected:
        assert resolve({"preset": preset}, models.utcnow().date()).label


def test_feature_switches_agree_everywhere(form: ConnectionForm, schemas: dict[str, Any]) -> None:
    expected = list(FEATURES)
    assert list(FEATURE_DEFAULTS) == expected
    for schema in ("FeatureSwitches", "FeaturesOut"):
        assert list(schemas[schema]["properties"]) == expected, schema
    for name, feature in FEATURES.items():
        field = form[f"feature_{name}"]
        assert field.default == feature.default, name
        switch = schemas["FeatureSwitches"]["properties"][name]
        bounds = [s for s in switch["anyOf"] if s.get("type") == "integer"]
        if feature.ge is not None:
            assert bounds == [{"type": "integer", "minimum": feature.ge, "maximum": feature.le}]
    # The sync's switches are the same set, and a stored connection with nothing
    # switched gets exactly what the form and the API call the defaults.
    assert {f.name for f in dataclasses.fields(Features)} == set(expected)
    assert Features(**features_of(None)) == Features.all_on()
