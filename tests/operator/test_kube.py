"""Idempotent apply: a write only when the live object lacks something the desired one says, or
holds a field the operator owns (server-side apply) that the desired one dropped."""

from __future__ import annotations

from typing import Any

import pytest

from toolmodel_operator.kube import (
    DEPLOYMENTS,
    FIELD_MANAGER,
    LEGACY_FIELD_MANAGER,
    Resource,
    apply,
    contains,
    owns_beyond,
    resource_of,
    up_to_date,
)


def test_a_live_object_with_server_defaults_contains_the_desired_one():
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "args": ["x"]}]}}}
    live = {
        "spec": {
            "replicas": 1,
            "paused": False,
            "template": {"containers": [{"name": "a", "args": ["x"], "tty": False}]},
        }
    }
    assert contains(desired, live)


@pytest.mark.parametrize(
    "live",
    [
        {"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "args": ["x"]}]}}},
        {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "args": ["x", "y"]}]}}},
        {"spec": {"replicas": 1}},
    ],
    ids=["changed-value", "longer-list", "missing-key"],
)
def test_any_difference_in_what_we_own_means_a_patch(live):
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "a", "args": ["x"]}]}}}
    assert not contains(desired, live)


def test_paths_follow_the_api_layout():
    assert DEPLOYMENTS.path("ml", "m", "status") == "/apis/apps/v1/namespaces/ml/deployments/m/status"
    assert Resource("", "v1", "configmaps").path(None) == "/api/v1/configmaps"
    assert resource_of({"apiVersion": "apps/v1", "kind": "Deployment"}) == DEPLOYMENTS
    with pytest.raises(ValueError, match="does not manage batch/v1/Job"):
        resource_of({"apiVersion": "batch/v1", "kind": "Job"})


# -- server-side apply: what the operator owns, from managedFields ------------------------------------

DEPLOYMENT = {
    "metadata": {"name": "m", "annotations": {"a": "1"}, "ownerReferences": [{"uid": "u", "name": "m"}]},
    "spec": {
        "template": {
            "spec": {
                "containers": [{"name": "engine", "args": ["x"], "ports": [{"containerPort": 8001}]}],
                "nodeSelector": {"gpu": "a100"},
            }
        }
    },
}
CONTAINER = 'k:{"name":"engine"}'
PORT = 'k:{"containerPort":8001,"protocol":"TCP"}'


def owned(*extra: tuple[str, ...]) -> dict[str, Any]:
    """The field set an apply of DEPLOYMENT leaves, plus the given paths."""
    fields: dict[str, Any] = {
        "f:metadata": {"f:annotations": {"f:a": {}}, "f:ownerReferences": {'k:{"uid":"u"}': {".": {}, "f:name": {}}}},
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {CONTAINER: {".": {}, "f:name": {}, "f:args": {}, "f:ports": {PORT: {".": {}}}}},
                    "f:nodeSelector": {"f:gpu": {}},
                }
            }
        },
    }
    for path in extra:
        node = fields
        for step in path:
            node = node.setdefault(step, {})
    return fields


def test_a_field_set_within_the_manifest_owns_nothing_beyond_it():
    assert not owns_beyond(owned(), DEPLOYMENT)  # the port's defaulted protocol included


@pytest.mark.parametrize(
    "path",
    [
        ("f:metadata", "f:annotations", "f:b"),
        ("f:spec", "f:template", "f:spec", "f:nodeSelector", "f:zone"),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"sidecar"}'),
        ("f:spec", "f:template", "f:spec", "f:containers", CONTAINER, "f:env"),
        ("f:spec", "f:template", "f:spec", "f:tolerations"),
        ("f:metadata", "f:finalizers", 'v:"x"'),
    ],
    ids=["annotation", "map key", "list item", "field of an item", "field", "set member"],
)
def test_a_field_the_manifest_dropped_is_owned_beyond_it(path: tuple[str, ...]):
    assert owns_beyond(owned(path), DEPLOYMENT)


def _live(managed: list[dict[str, Any]] | None, **changes: Any) -> dict[str, Any]:
    live = {**DEPLOYMENT, **changes}
    if managed is not None:
        live = {**live, "metadata": {**live["metadata"], "managedFields": managed}}
    return live


def entry(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields}


def test_up_to_date_when_the_values_are_there_and_nothing_owned_was_dropped():
    assert up_to_date(DEPLOYMENT, _live([entry(FIELD_MANAGER, "Apply", owned())]))
    # another manager's fields are not the operator's to remove
    other = entry("kubectl-rollout", "Update", owned(("f:metadata", "f:annotations", "f:restartedAt")))
    assert up_to_date(DEPLOYMENT, _live([entry(FIELD_MANAGER, "Apply", owned()), other]))


def test_not_up_to_date_when_a_dropped_field_is_still_owned_or_a_value_differs():
    dropped = owned(("f:metadata", "f:annotations", "f:b"))
    assert not up_to_date(DEPLOYMENT, _live([entry(FIELD_MANAGER, "Apply", dropped)]))
    differs = {**DEPLOYMENT, "metadata": {**DEPLOYMENT["metadata"], "annotations": {"a": "2"}}}
    assert not up_to_date(differs, _live([entry(FIELD_MANAGER, "Apply", owned())]))


def test_never_applied_or_written_by_an_older_version_means_an_apply():
    assert not up_to_date(DEPLOYMENT, _live([]))  # created by someone else: the operator takes its fields
    legacy = entry(LEGACY_FIELD_MANAGER, "Update", owned())
    assert not up_to_date(DEPLOYMENT, _live([entry(FIELD_MANAGER, "Apply", owned()), legacy]))


def test_a_server_without_field_management_compares_values_only():
    assert up_to_date(DEPLOYMENT, _live(None))  # the emulator: no managedFields at all


class Recording:
    """Enough of KubeClient for ``apply``: one live object, and the writes made."""

    def __init__(self, live: dict[str, Any] | None) -> None:
        self.live, self.writes = live, []

    async def get(self, *_: Any) -> dict[str, Any] | None:
        return self.live

    async def apply(self, resource: Any, namespace: Any, name: str, body: Any) -> dict[str, Any]:
        self.writes.append(("apply", body))
        return dict(body)

    async def json_patch(self, resource: Any, namespace: Any, name: str, operations: Any) -> dict[str, Any]:
        self.writes.append(("json-patch", operations))
        return {}


MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment", **DEPLOYMENT}


async def test_apply_creates_updates_or_leaves_alone():
    assert await apply(Recording(None), MANIFEST) == "created"  # type: ignore[arg-type]
    same = Recording(_live([entry(FIELD_MANAGER, "Apply", owned())]) | {"apiVersion": "apps/v1", "kind": "Deployment"})
    assert await apply(same, MANIFEST) == "unchanged" and not same.writes  # type: ignore[arg-type]
    dropped = Recording(_live([entry(FIELD_MANAGER, "Apply", owned(("f:metadata", "f:annotations", "f:b")))]))
    assert await apply(dropped, MANIFEST) == "updated"  # type: ignore[arg-type]
    assert dropped.writes == [("apply", MANIFEST)]


async def test_the_fields_of_an_older_version_are_adopted_before_the_apply():
    legacy = entry(LEGACY_FIELD_MANAGER, "Update", owned(("f:metadata", "f:annotations", "f:old")))
    other = entry("someone", "Update", {"f:metadata": {"f:labels": {"f:x": {}}}})
    live = _live([legacy, other]) | {"apiVersion": "apps/v1"}
    live["metadata"]["resourceVersion"] = "7"
    client = Recording(live)
    assert await apply(client, MANIFEST) == "updated"  # type: ignore[arg-type]
    (kind, operations), applied = client.writes
    assert kind == "json-patch" and applied == ("apply", MANIFEST)
    assert operations[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    managed = operations[1]["value"]
    assert [(e["manager"], e["operation"]) for e in managed] == [("someone", "Update"), (FIELD_MANAGER, "Apply")]
    assert managed[1]["fieldsV1"] == legacy["fieldsV1"]  # the old version's fields, now the operator's
