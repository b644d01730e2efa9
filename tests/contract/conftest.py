"""The contract matrix reuses the end-to-end stack (``tests/e2e/sim_stack.py``) and, at the end of
the session, prints everything it found across the dialects in one summary."""

from __future__ import annotations

import sys
from pathlib import Path

import contract_report
import pytest

E2E = str(Path(__file__).resolve().parents[1] / "e2e")
if E2E not in sys.path:
    sys.path.append(E2E)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    findings = contract_report.FINDINGS
    if not findings:
        return
    dialects = sorted(contract_report.DIALECTS_RUN)
    terminalreporter.section("OpenAI contract: every violation, by kind, dialects and requests")
    terminalreporter.write_line(contract_report.summary(findings, dialects))
