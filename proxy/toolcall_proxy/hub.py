"""Model files the Hugging Face way: the local cache layout vLLM downloads into, and the hub.

In a pod the engine downloads the model into ``$HF_HOME/hub`` (the operator mounts that volume
into the proxy too, read-only), so the proxy finds the tokenizer there as
``models--ORG--NAME/snapshots/REVISION/FILE``. It can also fetch the few files it needs itself,
from ``$HF_ENDPOINT`` (the hub by default) with ``$HF_TOKEN``, into a directory of its own.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HubError",
    "cache_dir",
    "cached_snapshot",
    "download",
    "hf_home",
    "is_model_id",
    "offline",
    "simulated_tokenizer_dir",
]

_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}\Z")
_REVISION = re.compile(r"[\w.-]{1,96}\Z")
_DOWNLOAD_TIMEOUT = 60.0


class HubError(RuntimeError):
    """A download that did not succeed, with the reason in words."""


def is_model_id(value: str) -> bool:
    """``org/name``, as the hub names models (and not a path that exists here)."""
    return bool(_MODEL_ID.match(value)) and not Path(value).exists()


def offline() -> bool:
    """``HF_HUB_OFFLINE=1``, as huggingface_hub and vLLM read it: use the cache, download nothing."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hf_home() -> Path:
    """``$HF_HOME``, or ``~/.cache/huggingface``."""
    return Path(os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))


def cache_dir() -> Path:
    """The hub cache vLLM and ``huggingface_hub`` use: ``$HF_HUB_CACHE``, or ``$HF_HOME/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return hf_home() / "hub"


def simulated_tokenizer_dir(model: str, home: Path | None = None) -> Path:
    """Where the simulated engine publishes the tokenizer it serves ``model`` with, for the proxy
    beside it: beside the hub cache, never in it, so that no tokenizer but the model's own is ever
    cached under the model's name."""
    return (home or hf_home()) / "toolmodel-sim" / model.strip("/").replace("/", "--")


def _repo_dir(cache: Path, model_id: str) -> Path:
    return cache / ("models--" + model_id.replace("/", "--"))


def cached_snapshot(
    model_id: str, files: Sequence[str], revision: str = "main", cache: Path | None = None
) -> Path | None:
    """The cached snapshot of ``model_id`` that holds every one of ``files``, or None.

    The snapshot ``refs/REVISION`` points to comes first; a revision given as a commit hash is a
    snapshot directory of its own.
    """
    repo = _repo_dir(cache or cache_dir(), model_id)
    snapshots = repo / "snapshots"
    candidates: list[Path] = []
    ref = repo / "refs" / revision
    if ref.is_file():
        candidates.append(snapshots / ref.read_text(encoding="utf-8").strip())
    candidates.append(snapshots / revision)
    if revision == "main" and snapshots.is_dir():
        candidates += sorted(snapshots.iterdir())
    for snapshot in candidates:
        if all((snapshot / name).is_file() for name in files):
            return snapshot
    return None


def download(
    model_id: str,
    files: Sequence[str],
    optional: Sequence[str],
    target: Path,
    *,
    revision: str = "main",
) -> Path:
    """Fetches ``files`` (and those of ``optional`` that exist) of ``model_id`` into ``target``.

    ``$HF_ENDPOINT`` names the hub (a mirror, or a test's server), ``$HF_TOKEN`` authorizes gated
    models. A file is written only once whole.
    """
    if not _MODEL_ID.match(model_id) or not _REVISION.match(revision):
        raise HubError(f"{model_id!r} at {revision!r} is not a model id and revision the hub knows")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    headers = {"User-Agent": "toolmodel-proxy"}
    if os.environ.get("HF_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['HF_TOKEN']}"
    folder = target / model_id.replace("/", "--") / revision
    for name in (*files, *optional):
        if (folder / name).is_file():
            continue
        url = f"{endpoint}/{model_id}/resolve/{urllib.parse.quote(revision)}/{name}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT) as response:
                data = response.read()
        except urllib.error.HTTPError as error:
            if name in optional and error.code == 404:
                continue
            reason = {401: "needs a token (HF_TOKEN)", 403: "the token may not read this model", 404: "not found"}
            raise HubError(
                f"{name} of {model_id}: HTTP {error.code} ({reason.get(error.code, error.reason)})"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            raise HubError(f"{name} of {model_id}: {getattr(error, 'reason', error)}") from None
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / name, data)
    return folder


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
