"""The prompt tests' clock, and the shared conversations in ``_conversations.py`` made importable
(``tests/`` is not a package)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from toolcall_proxy import rendering

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def today_is_26_jul_2024(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeze the clock behind ``strftime_now``: templates that print today's date (Llama's "Today
    Date", gpt-oss's "Current date", Granite's "Today's Date") print 26 Jul 2024."""

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FrozenDatetime:
            return cls(2024, 7, 26, 12, 0)

    monkeypatch.setattr(rendering, "datetime", FrozenDatetime)
