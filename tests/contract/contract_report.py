"""What the contract matrix found, kept for the session and summarised readably."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """``kind``: the fault, the same for every response that has it (``openapi $.choices[*].message:
    'refusal' is required``, ``HTTP 500``); ``request``: the matrix's request, ``plain (streamed)``;
    ``detail``: this response's own words (the exact path, the value, the error message)."""

    kind: str
    dialect: str
    request: str
    detail: str


FINDINGS: list[Finding] = []  # every finding of the session, for the summary at its end
DIALECTS_RUN: set[str] = set()  # the dialects the session ran the matrix on


def summary(findings: list[Finding], dialects: list[str]) -> str:
    """Grouped by kind, then by the set of dialects, listing the requests: one example each."""
    if not findings:
        return "no violations"
    by_kind: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    example: dict[str, Finding] = {}
    for finding in findings:
        by_kind[finding.kind][finding.request].add(finding.dialect)
        example.setdefault(finding.kind, finding)
    lines = [f"{len(findings)} violations of {len(by_kind)} kinds"]
    for kind in sorted(by_kind, key=lambda k: (not k.startswith("HTTP 5"), k)):
        first = example[kind]
        lines.append(f"\n* {kind}")
        lines.append(f"    e.g. {first.dialect} / {first.request}: {first.detail}")
        requests_by_dialects: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for request, where in sorted(by_kind[kind].items()):
            requests_by_dialects[tuple(sorted(where))].append(request)
        for group, requests in sorted(requests_by_dialects.items(), key=lambda item: (-len(item[0]), item[0])):
            everywhere = len(dialects) > 1 and len(group) == len(dialects)
            named = f"all {len(group)} dialects" if everywhere else ", ".join(group)
            lines.append(f"    {named}: {', '.join(requests)}")
    return "\n".join(lines)
