"""The Helm chart: lint, render, Kubernetes validity, values schema, RBAC shape, NOTES and `helm test`.

Every object `helm template` renders, with the default values and with tests/chart/values-full.yaml
(every value set), must be one Kubernetes accepts (kubernetes-validate, strict, newest version);
the custom objects are checked against their CRDs' schemas.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from _chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUES_FULL,
    Tools,
    env_of,
    find,
    helm_arguments,
    helm_template,
    objects,
    one,
    render,
    run,
)

from toolmodel_operator.crd import openapi_schema
from toolmodel_operator.demo import local_environment, local_mounts, local_volumes, localized
from toolmodel_operator.render import render as render_toolmodel

CRD_SOURCE = ROOT / "crds" / "toolmodel.dev_toolmodels.yaml"
CHART_CRD = CHART / "crds" / "toolmodel.dev_toolmodels.yaml"
FULLNAME = f"{RELEASE}-toolmodel-operator"

# Value sets rendered, linted and validated: the defaults, every value, and the other branches.
VARIANTS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    "defaults": ((), ()),
    "full": ((VALUES_FULL,), ()),
    "peering-cluster-wide": ((), ("replicaCount=3", "peering.enabled=true", "podMonitor.enabled=true")),
    "scale-out-cluster-wide": (
        (),
        (
            "scaleOut.leaderWorkerSet=true",
            "scaleOut.keda=true",
            "scaleOut.hpa=true",
            "scaleOut.inferencePool=true",
            "scaleOut.prometheusAddress=https://prometheus.example.com/prom",
            "podMonitor.enabled=true",
        ),
    ),
    "namespaced-minimal": (
        (),
        (
            "watchNamespaces={team-a}",
            "rbac.clusterObservation=false",
            "networkPolicy.enabled=false",
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
        ),
    ),
}

# prometheus-operator's Duration: 30s, 1m30s, ...
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}

# PodMonitor fields the chart uses, as prometheus-operator's CRD (monitoring.coreos.com/v1) names
# them; anything else is a typo. Not the full schema: that one is not vendored here.
POD_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                        },
                    },
                },
            },
        }
    },
}


def variant(tools: Tools, name: str, *, crds: bool = False) -> list[dict[str, Any]]:
    values, sets = VARIANTS[name]
    return objects(render(tools, values, sets, crds=crds))


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of every CRD the chart installs."""
    schemas = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                api_version = f"{crd['spec']['group']}/{version['name']}"
                schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(manifest: dict[str, Any]) -> None:
    key = (manifest["apiVersion"], manifest["kind"])
    custom = crd_schemas()
    if key in custom:
        jsonschema.Draft4Validator(custom[key]).validate(manifest)
    elif key == ("monitoring.coreos.com/v1", "PodMonitor"):
        jsonschema.Draft7Validator(POD_MONITOR_SCHEMA).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


# -- the CRD: one source ---------------------------------------------------------------------------


def test_the_charts_crd_is_a_link_to_the_generated_crd_not_a_copy():
    assert CHART_CRD.is_symlink(), f"{CHART_CRD} must be a symlink to {CRD_SOURCE}, never a copy that can drift"
    assert os.readlink(CHART_CRD) == "../../../crds/toolmodel.dev_toolmodels.yaml"
    assert CHART_CRD.resolve() == CRD_SOURCE.resolve()


def test_the_packaged_chart_carries_the_crd_byte_for_byte(tools: Tools, tmp_path: Path):
    done = run([tools.helm, "package", CHART, "--destination", tmp_path])
    assert done.returncode == 0, done.stderr
    (package,) = tmp_path.glob("toolmodel-operator-*.tgz")
    with tarfile.open(package) as archive:
        names = archive.getnames()
        member = archive.extractfile("toolmodel-operator/crds/toolmodel.dev_toolmodels.yaml")
        assert member is not None
        assert member.read() == CRD_SOURCE.read_bytes()
    assert "toolmodel-operator/crds/kopf.dev_peerings.yaml" in names
    assert not [name for name in names if "/tests/chart" in name or name.endswith(".tgz")]


def test_helm_template_includes_the_crds_from_the_link(tools: Tools):
    crds = [m for m in variant(tools, "defaults", crds=True) if m["kind"] == "CustomResourceDefinition"]
    assert sorted(m["metadata"]["name"] for m in crds) == [
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
        "toolmodels.toolmodel.dev",
    ]
    (ours,) = [m for m in crds if m["metadata"]["name"] == "toolmodels.toolmodel.dev"]
    assert ours == yaml.safe_load(CRD_SOURCE.read_text(encoding="utf-8"))


# -- lint, render, validate ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_helm_lint_strict(tools: Tools, name: str):
    values, sets = VARIANTS[name]
    done = run([tools.helm, "lint", "--strict", CHART, "--namespace", NAMESPACE, *helm_arguments(values, sets)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("name", VARIANTS)
def test_every_rendered_object_is_valid_kubernetes(tools: Tools, name: str):
    manifests = variant(tools, name, crds=True)
    assert manifests
    for manifest in manifests:
        try:
            validate(manifest)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {error}")
        namespaced = manifest["kind"] not in {
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
        }
        assert bool(manifest["metadata"].get("namespace")) == namespaced, manifest["metadata"]


def test_values_full_sets_every_value():
    def leaves(node: Any, path: str = "") -> Iterator[str]:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}" if path else key)
        else:
            yield path

    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    full = yaml.safe_load(VALUES_FULL.read_text(encoding="utf-8"))
    set_in_full = set(leaves(full))
    missing = {path for path in leaves(defaults) if not any(f == path or f.startswith(path + ".") for f in set_in_full)}
    assert not missing, f"tests/chart/values-full.yaml does not set: {sorted(missing)}"


def test_the_values_schema_accepts_both_value_files():
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    for path in (CHART / "values.yaml", VALUES_FULL):
        jsonschema.Draft7Validator(schema).validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_every_value_is_described_by_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert sorted(defaults) == sorted(set(schema["properties"]) - {"global"})


# Bad values and the message `helm template` gives for each: it names the value and the rule.
BAD_VALUES = [
    ("replicaCount=-1", "/replicaCount': minimum: got -1, want 0"),
    ("replicaCount=two", "/replicaCount': got string, want integer"),
    ("replicaCount=2", "replicaCount=2 needs peering.enabled=true"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ("image.repository=", "/image/repository': minLength: got 0, want 1"),
    ("image.digest=latest", "/image/digest': 'latest' does not match pattern"),
    ("image.tag=has space", "/image/tag'"),
    ("engineImage.tag=", "/engineImage': 'anyOf' failed"),
    ("proxyImage.registry=ghcr.io", "/proxyImage': additional properties 'registry' not allowed"),
    ("replicas=2", "additional properties 'replicas' not allowed"),
    ("watchNamespaces[0]=Team_A", "/watchNamespaces/0': 'Team_A' does not match pattern"),
    ("watchNamespaces=team-a", "/watchNamespaces': got string, want array"),
    ("maxGpusPerNode=0", "/maxGpusPerNode': minimum: got 0, want 1"),
    ("resyncSeconds=0", "/resyncSeconds': exclusiveMinimum: got 0, want 0"),
    ("verbose=yes", "/verbose': got string, want boolean"),
    ("peering.enabled=maybe", "/peering/enabled': got string, want boolean"),
    ("peering.name=Not_A_Name", "/peering/name': 'Not_A_Name' does not match pattern"),
    ("rbac.create=1", "/rbac/create': got number, want boolean"),
    ("resources.limits.memory=lots", "/resources/limits/memory': 'lots' does not match pattern"),
    ("resources.maximum.cpu=1", "/resources': additional properties 'maximum' not allowed"),
    ("podMonitor.interval=30", "/podMonitor/interval': got number, want string"),
    ("podMonitor.scrapeTimeout=ten", "/podMonitor/scrapeTimeout': 'ten' does not match pattern"),
    ("helmTest.port=0", "/helmTest/port': minimum: got 0, want 1"),
    ("helmTest.toolModel=Chat.GLM", "/helmTest/toolModel': 'Chat.GLM' does not match pattern"),
    ("networkPolicy.enabled=on", "/networkPolicy/enabled': got string, want boolean"),
    ("serviceAccount.create=false", "serviceAccount.name: name the existing ServiceAccount"),
    ("scaleOut.leaderWorkerSet=maybe", "/scaleOut/leaderWorkerSet': value must be one of 'auto', true, false"),
    ("scaleOut.keda=yes", "/scaleOut/keda': value must be one of 'auto', true, false"),
    ("scaleOut.hpa=1", "/scaleOut/hpa': value must be one of 'auto', true, false"),
    ("scaleOut.inferencePool=", "/scaleOut/inferencePool': value must be one of 'auto', true, false"),
    ("scaleOut.lws=true", "/scaleOut': additional properties 'lws' not allowed"),
    ("scaleOut.prometheusAddress=prometheus:9090", "/scaleOut/prometheusAddress': 'prometheus:9090' does not match"),
    ("scaleOut.prometheusAddress=http://a b", "/scaleOut/prometheusAddress': 'http://a b' does not match"),
]


@pytest.mark.parametrize(("assignment", "message"), BAD_VALUES, ids=[bad[0] for bad in BAD_VALUES])
def test_bad_values_fail_with_a_clear_message(tools: Tools, assignment: str, message: str):
    done = helm_template(tools, sets=[assignment])
    assert done.returncode != 0, f"--set {assignment} was accepted"
    assert message in done.stderr, done.stderr


# -- what the defaults render ----------------------------------------------------------------------


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_defaults_run_one_hardened_standalone_operator(tools: Tools):
    manifests = variant(tools, "defaults")
    deployment = one(manifests, "Deployment", FULLNAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # two standalone operators never overlap
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME and pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(manifests)
    assert container["image"] == "ghcr.io/toolmodel/operator:0.1.0"
    assert container["args"] == ["operator", "--scale-out-kinds="]  # nothing granted without the APIs
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = env_of(container)
    assert env["TOOLMODEL_LIVENESS"] == "http://0.0.0.0:8080/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["ports"] == [{"name": "healthz", "containerPort": 8080, "protocol": "TCP"}]
    assert env["TOOLMODEL_DEFAULT_ENGINE_IMAGE"] == "vllm/vllm-openai:v0.11.0"
    assert env["TOOLMODEL_DEFAULT_PROXY_IMAGE"] == "ghcr.io/toolmodel/proxy:0.1.0"
    assert env["TOOLMODEL_MAX_GPUS_PER_NODE"] == "8" and env["TOOLMODEL_RESYNC_SECONDS"] == "60"
    assert "TOOLMODEL_NAMESPACES" not in env and "TOOLMODEL_PEERING" not in env
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # kopf's peer identity
    assert not find(manifests, "PodMonitor") and not find(manifests, "ClusterKopfPeering")


def test_the_chart_defaults_are_the_operators_defaults(tools: Tools):
    from toolmodel_operator.api import DEFAULT_ENGINE_IMAGE, DEFAULT_PROXY_IMAGE
    from toolmodel_operator.render import DEFAULT_MAX_GPUS_PER_NODE

    env = env_of(operator_container(variant(tools, "defaults")))
    assert env["TOOLMODEL_DEFAULT_ENGINE_IMAGE"] == DEFAULT_ENGINE_IMAGE
    assert env["TOOLMODEL_DEFAULT_PROXY_IMAGE"] == DEFAULT_PROXY_IMAGE
    assert env["TOOLMODEL_MAX_GPUS_PER_NODE"] == str(DEFAULT_MAX_GPUS_PER_NODE)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{chart["appVersion"]}"' in project


def test_the_prometheus_address_is_passed_to_the_operator_only_when_set(tools: Tools):
    assert "--prometheus-address" not in operator_container(variant(tools, "defaults"))["args"]  # the operator's own
    address = "https://prometheus.example.com/prom"
    args = operator_container(variant(tools, "scale-out-cluster-wide"))["args"]
    assert args[args.index("--prometheus-address") :] == ["--prometheus-address", address]


def test_the_operator_accepts_the_arguments_the_chart_passes(tools: Tools):
    from toolmodel_operator.run import _parser

    for name in ("defaults", "full", "scale-out-cluster-wide"):
        args = operator_container(variant(tools, name))["args"]
        assert args[0] == "operator"
        try:
            options = _parser().parse_args(args[1:])
        except SystemExit:
            pytest.fail(f"`toolmodel {' '.join(args)}` ({name}) is refused by the operator's command line")
        if "--prometheus-address" in args:
            assert options.prometheus_address == args[args.index("--prometheus-address") + 1]


def test_the_documented_prometheus_default_is_the_operators(tools: Tools):
    from toolmodel_operator.scale_out import DEFAULT_PROMETHEUS_ADDRESS

    values = (CHART / "values.yaml").read_text(encoding="utf-8")
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    assert yaml.safe_load(values)["scaleOut"]["prometheusAddress"] == ""
    assert f"the operator's default, {DEFAULT_PROMETHEUS_ADDRESS}" in values
    assert f'`scaleOut.prometheusAddress` | `""` (the operator\'s, `{DEFAULT_PROMETHEUS_ADDRESS}`)' in readme


def test_defaults_grant_a_cluster_role_and_no_roles(tools: Tools):
    manifests = variant(tools, "defaults")
    role = one(manifests, "ClusterRole", FULLNAME)
    binding = one(manifests, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert not find(manifests, "Role") and not find(manifests, "RoleBinding")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    secrets = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert [rule["verbs"] for rule in secrets] == [["get"]]  # never list or watch Secrets
    assert not [rule for rule in role["rules"] if "namespaces" in rule["resources"]]  # not needed cluster-wide


def test_the_network_policy_admits_only_the_liveness_port_to_the_operator(tools: Tools):
    manifests = variant(tools, "defaults")
    policy = one(manifests, "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    deployment = one(manifests, "Deployment")
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    test_pod = one(manifests, "Pod")
    assert not selector.items() <= test_pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]


def test_full_values_serve_the_watched_namespaces_with_roles_and_peers(tools: Tools):
    manifests = variant(tools, "full")
    name = "toolmodel-operator-full"
    roles = find(manifests, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["llm-prod", "llm-staging"]
    for binding in find(manifests, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "toolmodel-operator-sa", "namespace": NAMESPACE}
        ]
    (observer,) = find(manifests, "ClusterRole")
    assert observer["metadata"]["name"] == f"{name}-observer"
    assert {resource for rule in observer["rules"] for resource in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert {verb for rule in observer["rules"] for verb in rule["verbs"]} == {"list", "watch"}
    peering_rules = [rule for rule in roles[0]["rules"] if rule["apiGroups"] == ["kopf.dev"]]
    assert peering_rules == [
        {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["kopf.dev"],
            "resources": ["kopfpeerings"],
            "resourceNames": ["toolmodel-ha"],
            "verbs": ["patch"],
        },
    ]
    peerings = find(manifests, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("llm-prod", "toolmodel-ha"),
        ("llm-staging", "toolmodel-ha"),
    ]
    deployment = one(manifests, "Deployment", name)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    container = operator_container(manifests)
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    prometheus = "http://prometheus.observability.svc.cluster.local:9090"
    kinds = "--scale-out-kinds=InferencePool,ScaledObject,LeaderWorkerSet"  # values-full grants these
    assert container["args"] == ["operator", "--verbose", kinds, "--prometheus-address", prometheus]
    env = env_of(container)
    assert env["TOOLMODEL_NAMESPACES"] == "llm-prod,llm-staging"
    assert env["TOOLMODEL_PEERING"] == "toolmodel-ha"
    assert env["TOOLMODEL_DEFAULT_ENGINE_IMAGE"] == "registry.example.com/mirror/vllm-openai@sha256:" + "1" * 64
    assert env["TOOLMODEL_DEFAULT_PROXY_IMAGE"] == "registry.example.com/ml/toolmodel-proxy@sha256:" + "2" * 64
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    monitor = one(manifests, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["llm-prod", "llm-staging"]}
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/managed-by"] == "toolmodel-operator"
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"},
        {"port": "engine", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"},
    ]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/instance"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert "CKV_K8S_43" not in json.dumps(deployment["metadata"].get("annotations", {}))  # pinned by digest


def test_peering_cluster_wide_uses_a_cluster_kopf_peering(tools: Tools):
    manifests = variant(tools, "peering-cluster-wide")
    (peering,) = find(manifests, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "toolmodel-operator"
    role = one(manifests, "ClusterRole")
    assert {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["list", "watch"]} in role[
        "rules"
    ]
    monitor = one(manifests, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def serving_pods(toolmodel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod templates the operator renders for a ToolModel, by role (the Deployment's pod, or a
    LeaderWorkerSet's leader and worker): their labels, and their ports' names -> container."""
    templates: dict[str, dict[str, Any]] = {}
    for manifest in render_toolmodel(toolmodel):
        if manifest["kind"] == "Deployment":
            templates["pod"] = manifest["spec"]["template"]
        elif manifest["kind"] == "LeaderWorkerSet":
            group = manifest["spec"]["leaderWorkerTemplate"]
            templates |= {"leader": group["leaderTemplate"], "worker": group["workerTemplate"]}
    return {
        role: {
            "labels": template["metadata"]["labels"],
            "ports": {port["name"]: c["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])},
        }
        for role, template in templates.items()
    }


@pytest.mark.parametrize(
    ("example", "roles"),
    [("sim.yaml", ["pod"]), ("autoscaled-qwen2.5-7b.yaml", ["pod"]), ("deepseek-v3-2node.yaml", ["leader", "worker"])],
)
def test_the_podmonitor_scrapes_the_proxy_and_the_engine_of_the_pods_the_operator_makes(
    tools: Tools, example: str, roles: list[str]
):
    monitor = one(variant(tools, "peering-cluster-wide"), "PodMonitor")
    endpoints = {endpoint["port"]: endpoint for endpoint in monitor["spec"]["podMetricsEndpoints"]}
    assert sorted(endpoints) == ["engine", "http"]
    assert {endpoint["path"] for endpoint in endpoints.values()} == {"/metrics"}
    toolmodel = yaml.safe_load((ROOT / "examples" / example).read_text(encoding="utf-8"))
    pods = serving_pods(toolmodel)
    assert sorted(pods) == sorted(roles)
    for role, pod in pods.items():
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["labels"].items(), role
        # The job label: the ToolModel's name, which the autoscalers' queries select by.
        assert pod["labels"][monitor["spec"]["jobLabel"]] == toolmodel["metadata"]["name"], role
        if role == "worker":  # no port of either: the leader exports the group's metrics
            assert not set(endpoints) & set(pod["ports"])
        else:
            assert {port: pod["ports"].get(port) for port in endpoints} == {"http": "proxy", "engine": "engine"}


def test_namespaced_without_observation_grants_nothing_cluster_wide(tools: Tools):
    manifests = variant(tools, "namespaced-minimal")
    assert not find(manifests, "ClusterRole") and not find(manifests, "ClusterRoleBinding")
    assert not find(manifests, "ServiceAccount") and not find(manifests, "NetworkPolicy")
    (role,) = find(manifests, "Role")
    assert role["metadata"]["namespace"] == "team-a"
    assert one(manifests, "RoleBinding")["subjects"][0]["name"] == "existing"
    assert one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


# -- NOTES.txt ---------------------------------------------------------------------------------------


def notes(tools: Tools, *sets: str) -> str:
    done = run([tools.helm, "install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=client",
                *helm_arguments((), sets)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split("NOTES:\n", 1)[1]


def test_the_notes_walk_through_a_first_toolmodel_and_an_sdk_call(tools: Tools):
    text = notes(tools)
    assert "kubectl get tm -n default" in text
    assert "kubectl wait --for=condition=Ready tm/chatglm3-sim -n default" in text
    assert 'OpenAI(base_url="http://chatglm3-sim.default.svc:8000/v1"' in text
    assert f"helm test {RELEASE} -n {NAMESPACE}" in text
    # The ToolModel they apply is valid and served by the simulated engine.
    manifest = re.search(r"<<'YAML'\n(.*?)\n\s*YAML\n", text, re.S)
    assert manifest is not None
    toolmodel = yaml.safe_load(textwrap.dedent(manifest.group(1)))
    jsonschema.Draft4Validator(openapi_schema()).validate(toolmodel)
    kinds = [m["kind"] for m in render_toolmodel(toolmodel)]
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    assert toolmodel["spec"]["serving"]["engine"] == "sim"


def test_the_notes_say_which_scale_out_kinds_are_granted(tools: Tools):
    text = notes(tools)
    assert "  granted:     none\n" in text
    assert "LeaderWorkerSets (scaleOut.leaderWorkerSet=auto, the cluster serves no leaderworkerset.x-k8s.io/v1)" in text
    assert "HorizontalPodAutoscalers (scaleOut.hpa=auto, the cluster serves no autoscaling/v2)" in text
    text = notes(tools, "scaleOut.keda=true", "scaleOut.hpa=false")
    assert "  granted:     KEDA ScaledObjects\n" in text
    assert "HorizontalPodAutoscalers (scaleOut.hpa=false)," in text
    assert "KEDA ScaledObjects (" not in text
    every = notes(
        tools, *(f"scaleOut.{feature}=true" for feature in ("leaderWorkerSet", "keda", "hpa", "inferencePool"))
    )
    assert "  granted:     LeaderWorkerSets, KEDA ScaledObjects, HorizontalPodAutoscalers, InferencePools\n" in every
    assert "not granted" not in every
    assert "Scale-out" not in notes(tools, "rbac.create=false")


def test_the_notes_warn_when_the_test_namespace_is_not_watched(tools: Tools):
    assert "WARNING" not in notes(tools)
    text = notes(tools, "watchNamespaces={team-a}")
    assert "serves ToolModels in the namespaces team-a" in text
    assert "WARNING: helmTest.namespace default is not among watchNamespaces" in text


# -- helm test ---------------------------------------------------------------------------------------


def test_pod(tools: Tools, *sets: str) -> dict[str, Any]:
    pod = one(objects(render(tools, (), sets)), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return pod


test_pod.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def test_the_helm_test_pod_is_hardened_and_uses_the_proxy_image(tools: Tools):
    pod = test_pod(tools)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/toolmodel/proxy:0.1.0"
    assert container["command"] == ["python", "-c"]
    assert env_of(container)["BASE_URL"] == "http://chatglm3-sim.default.svc:8000/v1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["restartPolicy"] == "Never"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _served(
    command: list[str], port: int, env: dict[str, str] | None = None, ready: str | None = None
) -> Iterator[None]:
    """The command running until the block ends, once it accepts connections on ``port`` (or, with
    ``ready``, answers that path with 200, as a Service routes only to a Ready pod). This machine's
    Hugging Face settings are not passed on: a pod's containers have only their own."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | (env or {})
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                if ready is None:
                    break
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{command} did not start: {process.communicate()[1]}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_helm_test_script_passes_against_the_sim_example_served_as_the_operator_would(tools: Tools, tmp_path: Path):
    """The pod's script, run here against the engine and proxy commands the operator renders for sim.yaml."""
    example = yaml.safe_load((ROOT / "examples" / "sim.yaml").read_text(encoding="utf-8"))
    manifests = {m["kind"]: m for m in render_toolmodel(example)}
    pod_spec = manifests["Deployment"]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod_spec["containers"]}
    # The pod's volumes as directories here: the chat template, and the model cache both share.
    config_maps = {manifests["ConfigMap"]["metadata"]["name"]: manifests["ConfigMap"]["data"]}
    volumes = local_volumes(pod_spec, config_maps, tmp_path)
    engine_mounts, proxy_mounts = (
        local_mounts(containers["engine"], volumes),
        local_mounts(containers["proxy"], volumes),
    )
    engine_port, proxy_port = _free_port(), _free_port()
    toolmodel = str(Path(sys.executable).parent / "toolmodel")
    engine_args = [localized(argument, engine_mounts) for argument in containers["engine"]["args"]]
    engine_args[engine_args.index("--port") + 1] = str(engine_port)
    assert containers["engine"]["command"] == ["toolmodel", "sim"]
    offline = {"HF_HUB_OFFLINE": "1"}  # nothing is downloaded: the sim engine writes its demo tokenizer
    engine_env = local_environment(containers["engine"], engine_mounts) | offline
    proxy_env = local_environment(containers["proxy"], proxy_mounts) | offline
    proxy_env |= {"TOOLMODEL_UPSTREAM": f"http://127.0.0.1:{engine_port}", "TOOLMODEL_PORT": str(proxy_port)}
    proxy_env["TOOLMODEL_HOST"] = "127.0.0.1"

    (container,) = test_pod(tools, f"helmTest.port={proxy_port}")["spec"]["containers"]
    script = container["args"][0]
    env = {**os.environ, **env_of(container), "BASE_URL": f"http://127.0.0.1:{proxy_port}/v1"}
    with (
        _served([toolmodel, "sim", *engine_args], engine_port, engine_env),
        _served([toolmodel, *containers["proxy"]["args"]], proxy_port, proxy_env, ready="/health"),
    ):
        done = run([sys.executable, "-c", script], env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "called get_current_weather(" in done.stdout and "PASS" in done.stdout


def test_the_readme_documents_every_value():
    def leaves(node: Any, path: str = "") -> Iterator[str]:
        if isinstance(node, dict) and node and path not in ("podSecurityContext", "securityContext", "resources"):
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}" if path else key)
        else:
            yield path

    readme = (CHART / "README.md").read_text(encoding="utf-8").split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    table = {line.split("|")[1].strip().strip("`") for line in readme.splitlines() if line.startswith("| `")}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert sorted(set(leaves(defaults)) - table) == []
    assert sorted(table - set(leaves(defaults))) == []
