"""The tool-call proxy server: an HTTP/1.1 front end in front of vLLM."""

from .app import ProxyApp, serve
from .settings import ProxySettings, SettingsError

__all__ = ["ProxyApp", "ProxySettings", "SettingsError", "serve"]
