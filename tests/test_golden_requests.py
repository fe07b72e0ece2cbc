"""The exact bytes of each refresh's one write, pinned for representative reports.

A refresh's body is what teammates see (values, formats, notes, history rows, chart), so
work on how fast it is built must not change one byte of it. Each golden under
``tests/fixtures/golden/`` is the body as requests encodes it for gspread's
``batchUpdate``. After a deliberate change to what is written, regenerate them with
``SHEETS_SYNC_UPDATE_GOLDENS=1 python -m pytest tests/test_golden_requests.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sheets_sync.pipeline.request_body import batch_update_body
from tests import engine_scenarios
from tests.fakes import discovery

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden"
SCENARIOS = {s.name: s for s in engine_scenarios.scenarios()}


def _first_difference(got: bytes, want: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
              min(len(got), len(want)))
    return (f"first difference at byte {at}: got …{got[max(0, at - 80):at + 80]!r}…, "
            f"golden …{want[max(0, at - 80):at + 80]!r}…")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_write_is_byte_for_byte_the_golden(name):
    body = engine_scenarios.refresh_body(SCENARIOS[name])
    path = GOLDEN_DIR / f"{name}.json"
    if os.environ.get("SHEETS_SYNC_UPDATE_GOLDENS") == "1":
        path.write_bytes(body)
    want = path.read_bytes()
    assert body == want, _first_difference(body, want)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_body_is_what_requests_would_have_encoded(name):
    requests_ = engine_scenarios.refresh_requests(SCENARIOS[name])
    assert batch_update_body(requests_) == engine_scenarios.encode(requests_)


def test_a_body_with_a_number_json_cannot_carry_is_refused():
    with pytest.raises(ValueError):
        batch_update_body([{"repeatCell": {"cell": {"userEnteredValue": {
            "numberValue": float("nan")}}}}])


def test_the_goldens_are_valid_batch_updates_that_cover_every_feature():
    """The pinned bodies are what Google accepts, and between them they hold every kind
    of request and cell a refresh can send (so a golden cannot silently pin nothing)."""
    kinds: set[str] = set()
    cell_parts: set[str] = set()
    for name in SCENARIOS:
        body = json.loads((GOLDEN_DIR / f"{name}.json").read_bytes())
        violations, _ = discovery.check("BatchUpdateSpreadsheetRequest", body)
        assert violations == [], (name, violations[:3])
        for request in body["requests"]:
            kinds.add(next(iter(request)))
            for row in request.get("updateCells", {}).get("rows", []):
                for cell in row.get("values", []):
                    cell_parts |= set(cell) | set(cell.get("userEnteredValue", {}))
    assert kinds >= {
        "addSheet", "updateSheetProperties", "updateCells", "repeatCell",
        "updateDimensionProperties", "addChart", "updateChartSpec", "appendDimension",
        "deleteDimension", "createDeveloperMetadata", "deleteDeveloperMetadata",
    }
    assert cell_parts >= {"userEnteredValue", "userEnteredFormat", "note", "stringValue",
                          "numberValue", "formulaValue"}
