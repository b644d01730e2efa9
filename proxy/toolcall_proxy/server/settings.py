"""The proxy's settings: command-line flags, each with an environment variable for the sidecar."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ENVIRONMENT", "GUIDED_DECODING", "ProxySettings", "SettingsError", "from_environment"]

# flag -> environment variable; the operator sets these on the sidecar container.
ENVIRONMENT = {
    "upstream": "TOOLMODEL_UPSTREAM",
    "dialect": "TOOLMODEL_DIALECT",
    "host": "TOOLMODEL_HOST",
    "port": "TOOLMODEL_PORT",
    "api_key": "TOOLMODEL_API_KEY",
    "upstream_api_key": "TOOLMODEL_UPSTREAM_API_KEY",
    "max_body_bytes": "TOOLMODEL_MAX_BODY_BYTES",
    "upstream_timeout": "TOOLMODEL_UPSTREAM_TIMEOUT",
    "mode": "TOOLMODEL_MODE",
    "guided_decoding": "TOOLMODEL_GUIDED_DECODING",
    "log_level": "TOOLMODEL_LOG_LEVEL",
    "max_header_bytes": "TOOLMODEL_MAX_HEADER_BYTES",
    "header_timeout": "TOOLMODEL_HEADER_TIMEOUT",
    "body_timeout": "TOOLMODEL_BODY_TIMEOUT",
    "max_connections": "TOOLMODEL_MAX_CONNECTIONS",
    "tokenizer": "TOOLMODEL_TOKENIZER",
    "tokenizer_revision": "TOOLMODEL_TOKENIZER_REVISION",
    "tokenizer_wait": "TOOLMODEL_TOKENIZER_WAIT",
}
# How to ask the engine to constrain a forced call's arguments to the tool's JSON Schema:
# How the engine takes a tool-call constraint: found out from its version (auto), or said:
# `structured_outputs` (vLLM >= 0.11), `guided` (guided_grammar/guided_json, vLLM 0.4 to 0.11), off.
GUIDED_DECODING = ("auto", "structured_outputs", "guided", "off")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class ProxySettings:
    upstream: str = "http://127.0.0.1:8001"
    dialect: str = "generic"
    host: str = "0.0.0.0"
    port: int = 8000
    api_key: str | None = None
    upstream_api_key: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    # what one client may take of the front end: the request line and headers, the time its
    # head and its body may take in total, and the connections open at once
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096
    upstream_timeout: float = 600.0
    # "proxy": render and parse tool calls here; "native": vLLM parses them, requests are relayed
    mode: str = "proxy"
    guided_decoding: str = "auto"
    log_level: str = "info"
    # Token-id dialects (ChatGLM3): the model's tokenizer, a directory or a Hugging Face model id
    # found in the hub cache the engine downloads into (or fetched from the hub), and how long to
    # wait for it to appear before giving up.
    tokenizer: str | None = None
    tokenizer_revision: str = "main"
    tokenizer_wait: float = 1800.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"--upstream {self.upstream!r}: give a URL such as http://127.0.0.1:8001")
        if self.guided_decoding not in GUIDED_DECODING:
            raise SettingsError(
                f"--guided-decoding {self.guided_decoding!r}: choose one of {', '.join(GUIDED_DECODING)}"
            )
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"--log-level {self.log_level!r}: choose debug, info, warning or error")
        if self.mode not in ("proxy", "native"):
            raise SettingsError(f"--mode {self.mode!r}: choose 'proxy' or 'native'")
        if not 0 < self.port < 65536:
            raise SettingsError(f"--port {self.port}: choose a port from 1 to 65535")
        if self.max_body_bytes < 1024:
            raise SettingsError(f"--max-body-bytes {self.max_body_bytes}: allow at least 1024 bytes")
        if self.max_header_bytes < 1024:
            raise SettingsError(f"--max-header-bytes {self.max_header_bytes}: allow at least 1024 bytes")
        if self.header_timeout <= 0 or self.body_timeout <= 0:
            raise SettingsError("--header-timeout and --body-timeout: give seconds, more than 0")
        if self.max_connections < 1:
            raise SettingsError(f"--max-connections {self.max_connections}: allow at least 1")
        if self.tokenizer_wait < 0:
            raise SettingsError(f"--tokenizer-wait {self.tokenizer_wait}: give the seconds to wait, 0 or more")

    @property
    def upstream_base(self) -> str:
        return self.upstream.rstrip("/")


def from_environment(overrides: dict[str, object]) -> ProxySettings:
    """Settings from flags (``overrides``, None = not given), then environment, then defaults."""
    values: dict[str, object] = {}
    for name, variable in ENVIRONMENT.items():
        given = overrides.get(name)
        if given is None and variable in os.environ:
            given = os.environ[variable]
        if given is None:
            continue
        default = getattr(ProxySettings, name, None)
        try:
            if isinstance(default, bool):
                values[name] = str(given).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                values[name] = int(str(given))
            elif isinstance(default, float):
                values[name] = float(str(given))
            else:
                values[name] = str(given)
        except ValueError:
            raise SettingsError(f"{variable}/--{name.replace('_', '-')} {given!r}: expected a number") from None
    return ProxySettings(**values)  # type: ignore[arg-type]
