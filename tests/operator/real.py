"""The real control plane of hack/real-apiserver.sh, for the operator's integration tests.

One per test session, in a run directory of its own (free loopback ports): etcd, kube-apiserver
v1.20 with RBAC and the OwnerReferencesPermissionEnforcement admission plugin,
kube-controller-manager (garbage collector, deployments, replica sets, namespaces, service
accounts), and the CRD-only apiextensions-apiserver v1.36 for the CRD's CEL rules. The first use
on a machine builds it (about 15 minutes on 2 cores; cached in ~/.cache/toolmodel/real-k8s).

The operator runs here as it does in a cluster: as a ServiceAccount (a token from the TokenRequest
API) bound to the ClusterRole the chart renders, so every scenario also checks the chart's RBAC.

``TOOLMODEL_REAL_K8S``: ``1`` requires the real backend (a failure when it cannot run), ``0`` skips
it, unset: required under CI (``CI=true``, as .ci/run sets it), else skipped, saying why, where it
cannot be built or started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from _crds import FILES as PUBLISHED_CRDS
from _crds import published_crd
from emulated import Cluster

from toolmodel_operator.crd import crd_manifest
from toolmodel_operator.kube import TOOLMODELS, KubeClient, KubeError, Resource

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "real-apiserver.sh"
CHART = ROOT / "charts" / "toolmodel-operator"
TOOLS_BIN = Path(os.environ.get("TOOLMODEL_TOOLS_DIR", ROOT / ".tools")) / "bin"
OPERATOR_NAMESPACE = "toolmodel-system"
OPERATOR_ACCOUNT = "toolmodel-operator"
ADMISSION = "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"
TEST_MANAGER = "test"  # the field manager of the tests' own writes, as "kubectl" is of kubectl's

NAMESPACES = Resource("", "v1", "namespaces")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles")
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


def required() -> bool:
    """Whether a real backend that cannot run is a failure rather than a skip."""
    setting = os.environ.get("TOOLMODEL_REAL_K8S", "")
    return setting == "1" or (setting != "0" and os.environ.get("CI", "").lower() in ("true", "1"))


def unavailable(reason: str) -> None:
    """Fails (CI, or TOOLMODEL_REAL_K8S=1) or skips the test that needs the real control plane."""
    if required():
        pytest.fail(f"the real control plane is required here (CI or TOOLMODEL_REAL_K8S=1): {reason}", pytrace=False)
    pytest.skip(f"real control plane unavailable: {reason}")


def _script(*args: str, run_dir: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "TOOLMODEL_REALK8S_RUN": str(run_dir), "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(done: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


def chart_cluster_role(api_versions: Iterable[str] = ()) -> dict[str, Any]:
    """The ClusterRole the chart renders with its default values on a cluster serving ``api_versions``
    (group/version/Kind, as helm's ``--api-versions``, which `helm install` learns from the cluster)."""
    helm = str(TOOLS_BIN / "helm")
    if not os.access(helm, os.X_OK):
        done = subprocess.run(
            ["bash", str(ROOT / "hack" / "install-tools.sh")],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"hack/install-tools.sh could not install helm:\n{_tail(done)}"
    done = subprocess.run(
        [helm, "template", "tm", str(CHART), "--namespace", OPERATOR_NAMESPACE, "--show-only", "templates/rbac.yaml"]
        + [f"--api-versions={api_version}" for api_version in api_versions],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (role,) = [doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "ClusterRole"]
    return dict(role)


@dataclass
class ControlPlane:
    run_dir: Path
    env: dict[str, str]
    operator_role: dict[str, Any] = field(default_factory=dict)  # the chart's, as created here
    operator_token: str = ""
    _namespaces: int = 0

    @property
    def server(self) -> str:
        return self.env["REALK8S_SERVER"]

    @property
    def cel_server(self) -> str:
        return self.env["REALK8S_CEL_SERVER"]

    @property
    def ca(self) -> str:
        return self.env["REALK8S_CA"]

    def admin(self, server: str | None = None) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server or self.server, ca_path=self.ca, token=self.env["REALK8S_ADMIN_TOKEN"])

    def as_token(self, token: str) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=self.server, ca_path=self.ca, token=token)

    def operator(self) -> kopf.ConnectionInfo:
        """The operator's credentials: the chart's ServiceAccount, ClusterRole and binding."""
        return self.as_token(self.operator_token)

    def new_namespace_name(self, hint: str) -> str:
        self._namespaces += 1
        return f"{hint[:40].strip('-')}-{self._namespaces}".lower()

    def restart_apiserver(self) -> None:
        done = _script("restart-apiserver", run_dir=self.run_dir, timeout=120)
        assert done.returncode == 0, _tail(done)

    def audit(self) -> list[dict[str, Any]]:
        """The API server's audit events so far (level Metadata; the control plane's own omitted)."""
        path = Path(self.env["REALK8S_AUDIT_LOG"])
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def service_account_token(client: KubeClient, namespace: str, name: str) -> str:
    """A token for the ServiceAccount, from the TokenRequest API (an hour)."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    path = SERVICE_ACCOUNTS.path(namespace, name, "token")
    response = await client._request("POST", path, request)
    return str(response["status"]["token"])


async def create_or_replace(client: KubeClient, resource: Resource, body: Mapping[str, Any]) -> None:
    metadata = body["metadata"]
    try:
        await client.create(resource, metadata.get("namespace"), body)
    except KubeError as error:
        if error.status != 409:
            raise
        await client.patch(resource, metadata.get("namespace"), metadata["name"], body)


async def install_operator_account(plane: ControlPlane, client: KubeClient, role: Mapping[str, Any]) -> str:
    """A ServiceAccount with ``role`` (a ClusterRole, created or replaced) bound; returns its token."""
    namespace, name = OPERATOR_NAMESPACE, role["metadata"]["name"]
    await create_or_replace(
        client, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    await create_or_replace(client, SERVICE_ACCOUNTS, account)
    await create_or_replace(client, CLUSTER_ROLES, role)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    await create_or_replace(client, CLUSTER_ROLE_BINDINGS, binding)
    return await service_account_token(client, namespace, name)


async def install_crd(client: KubeClient, crd: Mapping[str, Any] | None = None) -> None:
    """The ToolModel CRD, or ``crd``, created or replaced, once established."""
    crd = crd or crd_manifest()
    await create_or_replace(client, CRDS, crd)
    deadline = time.monotonic() + 30
    while True:
        crd = await client.get(CRDS, None, crd["metadata"]["name"])
        conditions = {c["type"]: c["status"] for c in ((crd or {}).get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            return
        assert time.monotonic() < deadline, f"the CRD is not established: {crd}"
        await asyncio.sleep(0.1)


async def _set_up(plane: ControlPlane) -> None:
    async with KubeClient(plane.admin()) as client:
        await install_crd(client)
        # The other projects' CRDs a ToolModel may need (LeaderWorkerSet, KEDA, InferencePool), as
        # published: the chart grants the operator their kinds because the cluster serves them.
        installed = []
        for group, kind in PUBLISHED_CRDS:
            crd = published_crd(group, kind)
            await install_crd(client, _without_empty_string_defaults(crd))
            version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
            installed.append(f"{group}/{version}/{kind}")
        role = chart_cluster_role(installed)
        plane.operator_role = role
        plane.operator_token = await install_operator_account(plane, client, role)
    async with KubeClient(plane.admin(plane.cel_server)) as client:
        await install_crd(client)


def _without_empty_string_defaults(node: Any) -> Any:
    """The published schema less its ``default: ""`` (the names of the pod templates' object
    references, in the schemas of Kubernetes 1.29 on): the 1.20 API server reads an empty default as
    null and refuses the CRD for it. A list keyed by such a field (imagePullSecrets, by name) then
    needs the key required, as the 1.20 schemas had it. Nothing else of the schema changes."""
    if isinstance(node, list):
        return [_without_empty_string_defaults(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {
        key: _without_empty_string_defaults(value) for key, value in node.items() if (key, value) != ("default", "")
    }
    items = node.get("items")
    if isinstance(items, dict) and node.get("x-kubernetes-list-map-keys"):
        properties = items.get("properties") or {}
        undefaulted = [key for key in node["x-kubernetes-list-map-keys"] if "default" not in properties.get(key, {})]
        required = items.setdefault("required", [])
        required.extend(key for key in undefaulted if key not in required)
    return node


def start(run_dir: Path) -> Iterator[ControlPlane]:
    """Builds (once per machine), starts, yields and stops the control plane; skips or fails
    (see ``required``) where that cannot be done."""
    if os.environ.get("TOOLMODEL_REAL_K8S") == "0":
        unavailable("TOOLMODEL_REAL_K8S=0")
    if sys.platform != "linux" or not shutil.which("apt-get"):
        unavailable("hack/real-apiserver.sh builds from Debian packages: it needs Linux with apt-get")
    for step in ("build", "build-cel"):
        t0 = time.monotonic()
        done = _script(step, run_dir=run_dir, timeout=1800)
        if done.returncode != 0:
            unavailable(f"hack/real-apiserver.sh {step} failed:\n{_tail(done)}")
        if time.monotonic() - t0 > 10:
            print(f"\nhack/real-apiserver.sh {step}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    try:
        for step in ("start", "start-cel"):
            done = _script(step, run_dir=run_dir, timeout=180, TOOLMODEL_REALK8S_APISERVER_ARGS=ADMISSION)
            if done.returncode != 0:
                unavailable(f"hack/real-apiserver.sh {step} failed:\n{_tail(done)}")
        env = dict(
            line.split("=", 1)
            for line in (run_dir / "env").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        plane = ControlPlane(run_dir, env)
        # On a loop of its own: the first test that needs the control plane asks for it from its
        # own (running) loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _set_up(plane)).result()
        yield plane
    finally:
        _script("stop", run_dir=run_dir, timeout=120)


@asynccontextmanager
async def real_cluster(plane: ControlPlane, test: str) -> AsyncIterator[Cluster]:
    """A namespace of its own on the real control plane, deleted afterwards (with what is in it)."""
    hint = "".join(c if c.isalnum() else "-" for c in test.split("[")[0].removeprefix("test_"))
    namespace = plane.new_namespace_name(hint)
    async with KubeClient(plane.admin(), field_manager=TEST_MANAGER) as client:
        await client.create(
            NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        try:
            yield Cluster(
                url=plane.server,
                client=client,
                backend="real",
                namespace=namespace,
                operator_connection=plane.operator(),
                plane=plane,
            )
        finally:
            # Its ToolModels first: gone at once, where the namespace takes a while, so that the
            # operators of the tests that follow do not meet them.
            for toolmodel in await client.list(TOOLMODELS, namespace):
                await client.delete(TOOLMODELS, namespace, toolmodel["metadata"]["name"])
            await client.delete(NAMESPACES, None, namespace)
