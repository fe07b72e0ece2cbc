"""The one write's body as bytes (pure: standard library only).

gspread would hand the body to requests as ``json=``, which encodes it with
``json.dumps(body, allow_nan=False)`` and UTF-8. A refresh's body is up to several
megabytes of small dicts, and the default ``check_circular`` spends a fifth of the
encoding on remembering every one of them to detect reference cycles, which a body
built by the renderer never has. Without the check the bytes are the same (the golden
bodies under ``tests/fixtures/golden`` pin them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def batch_update_body(requests_: Sequence[Mapping[str, Any]]) -> bytes:
    """``{"requests": requests_}`` exactly as requests would encode it for ``json=``.

    Raises ``ValueError`` for NaN or infinity, as requests refuses them too.
    """
    text = json.dumps({"requests": requests_}, allow_nan=False, check_circular=False)
    return text.encode("utf-8")
