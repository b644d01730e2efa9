"""Getting the model's tokenizer for a token-id dialect, in the background, and saying how it goes.

The files come from, in order: the directory ``--tokenizer`` names; or, for a model id, the
Hugging Face cache the engine downloads into (in a pod, the operator mounts it into the proxy);
or the hub itself, with ``$HF_TOKEN``. Until they are loaded the proxy is not ready and answers
chat requests with 503 and the reason. Files that are wrong, or that never come within
``--tokenizer-wait`` seconds, end the proxy with the reason (in ``/dev/termination-log`` too,
where Kubernetes shows it): a wrong prompt is never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from .. import hub
from ..tokens import PromptTokenizer, TokenizerError, TokenLayout

__all__ = ["TokenizerLoader"]

log = logging.getLogger("toolmodel.proxy")

_POLL_SECONDS = 0.5
_DOWNLOAD_RETRY_SECONDS = 30.0
_OPTIONAL_FILES = ("tokenizer_config.json", "config.json")
TERMINATION_LOG = Path("/dev/termination-log")


class TokenizerLoader:
    """Finds and loads one tokenizer; ``tokenizer`` is set once it is loaded."""

    def __init__(
        self,
        layout: TokenLayout,
        source: str | None,
        *,
        revision: str = "main",
        wait: float = 1800.0,
        on_failure: Callable[[str], None],
        download_dir: Path | None = None,
    ) -> None:
        self.layout = layout
        self.source = source
        self.revision = revision
        self.wait = wait
        self.tokenizer: PromptTokenizer | None = None
        self.state = "looking for the tokenizer"
        self._on_failure = on_failure
        self._download_dir = download_dir or Path(tempfile.gettempdir()) / "toolmodel-tokenizers"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            self.tokenizer = await self._find()
        except TokenizerError as error:
            self.state = f"no usable tokenizer: {error}"
            log.error("%s", self.state)
            _write_termination_message(self.state)
            self._on_failure(self.state)
            return
        self.state = "loaded"
        log.info("tokenizer loaded from %s", self.tokenizer.source)
        if self.tokenizer.demo:
            log.warning(
                "%s holds the simulated engine's demo tokenizer, not a model's: right for `toolmodel sim`, "
                "wrong for any real model",
                self.tokenizer.source,
            )

    async def _find(self) -> PromptTokenizer:
        source, files = self.source, self.layout.files
        if not source:
            raise TokenizerError(
                "this dialect sends the model token ids: give the model's tokenizer with --tokenizer "
                "(a directory, or the Hugging Face model id) or TOOLMODEL_TOKENIZER"
            )
        model_id = hub.is_model_id(source)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        downloading: asyncio.Future[Path] | None = None
        next_download = loop.time()
        download_problem = ""
        try:
            while True:
                found = self._found(source, model_id)
                if found is not None:
                    return await asyncio.to_thread(PromptTokenizer.load, found, self.layout)
                # The download runs beside the watch on the cache: whichever has the files first.
                if model_id and downloading is None and loop.time() >= next_download and not hub.offline():
                    downloading = asyncio.ensure_future(
                        asyncio.to_thread(
                            hub.download, source, files, _OPTIONAL_FILES, self._download_dir, revision=self.revision
                        )
                    )
                if downloading is not None and downloading.done():
                    try:
                        folder = downloading.result()
                    except hub.HubError as error:
                        download_problem = f"; the download failed: {error}"
                        next_download = loop.time() + _DOWNLOAD_RETRY_SECONDS
                        downloading = None
                    else:
                        return await asyncio.to_thread(PromptTokenizer.load, folder, self.layout)
                if model_id:
                    where = f"of {source} in {hub.cache_dir()} (the engine downloads it){download_problem}"
                else:
                    where = f"in {source} (the simulated engine writes it there at start)"
                self.state = f"waiting for {', '.join(files)} {where}"
                if loop.time() >= deadline:
                    raise TokenizerError(f"{self.state}; gave up after {self.wait:g} s (--tokenizer-wait)")
                await asyncio.sleep(_POLL_SECONDS)
        finally:
            if downloading is not None:
                downloading.cancel()  # its thread ends by itself; what it fetched is unused

    def _found(self, source: str, model_id: bool) -> Path | None:
        if model_id:
            return hub.cached_snapshot(source, self.layout.files, self.revision)
        folder = Path(source)
        return folder if all((folder / name).is_file() for name in self.layout.files) else None


def _write_termination_message(message: str) -> None:
    """Kubernetes shows this file's text as the container's termination message (it creates the
    file; elsewhere there is none to write)."""
    if not TERMINATION_LOG.is_file():
        return
    with contextlib.suppress(OSError):
        TERMINATION_LOG.write_text(message[:4000], encoding="utf-8")
