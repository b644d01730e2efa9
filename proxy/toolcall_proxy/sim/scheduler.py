"""The simulated engine's batch, kept as vLLM's scheduler (V1) keeps it: which sequences run, which wait.

vLLM runs at most ``--max-num-seqs`` sequences at once. Each holds KV-cache blocks of
``--block-size`` tokens for its prompt and what it has written so far, out of a cache of a fixed
number of blocks, and the batch holds sequences of at most ``--max-loras`` LoRA adapters. A new
sequence waits in arrival order until there is room: a full batch or a full cache stops the queue
(first come, first served), while one whose adapter the batch has no room for is passed over for
those behind it. A running sequence that needs a block when none is free takes the blocks of the
sequence admitted last (a preemption): that one goes back to the head of the queue and, when there
is room again, resumes with its prompt and output so far recomputed.

These are what the engine's /metrics reports: ``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc`` and ``vllm:num_preemptions``, the
signals an autoscaler reads. There is no prefix cache: sequences with a common prefix each hold
their own blocks.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Scheduler", "Sequence"]


class Sequence:
    """One sequence the engine generates: a prompt, and the tokens written after it."""

    __slots__ = ("adapter", "admitted", "blocks", "prompt_tokens", "written")

    def __init__(self, prompt_tokens: int, adapter: str | None = None) -> None:
        self.prompt_tokens = prompt_tokens
        self.adapter = adapter  # the LoRA adapter it is generated with; None: the base model
        self.written = 0
        self.blocks = 0  # KV-cache blocks held: none while it waits
        self.admitted: asyncio.Future[None] | None = None  # done while it runs


class Scheduler:
    def __init__(self, *, max_num_seqs: int, kv_blocks: int, block_size: int, max_loras: int) -> None:
        self.max_num_seqs = max_num_seqs
        self.kv_blocks = kv_blocks
        self.block_size = block_size
        self.max_loras = max_loras
        self.free_blocks = kv_blocks
        self.preemptions = 0
        self._running: list[Sequence] = []  # in the order admitted: the last is preempted first
        self._waiting: deque[Sequence] = deque()

    # -- what /metrics reports ---------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_cache_usage(self) -> float:
        """The fraction of the cache's blocks in use (1 is all of them), as vLLM reports it."""
        return (self.kv_blocks - self.free_blocks) / self.kv_blocks

    def adapters(self) -> tuple[list[str], list[str]]:
        """The adapters of the running sequences and of the waiting ones, each named once."""
        running = dict.fromkeys(s.adapter for s in self._running if s.adapter)
        waiting = dict.fromkeys(s.adapter for s in self._waiting if s.adapter)
        return list(running), list(waiting)

    # -- a sequence's life -------------------------------------------------------------------------
    async def admit(self, sequence: Sequence, gone: asyncio.Event | None = None) -> bool:
        """Queues ``sequence`` and returns once it runs: True; False if ``gone`` is set first (its
        client went away). Either way ``leave`` must follow."""
        self._enqueue(sequence)
        self._schedule()
        return await self._until_running(sequence, gone)

    async def grow(self, sequence: Sequence, gone: asyncio.Event | None = None) -> bool:
        """``sequence`` writes a token. When its tokens outgrow its blocks it takes a free one, or
        the blocks of the sequence admitted last, which may be itself: it then waits, as one
        preempted by another does, for room. False if ``gone`` is set while it waits."""
        sequence.written += 1
        while sequence.admitted is not None and sequence.admitted.done():
            needed = self._blocks_for(sequence)
            if needed <= sequence.blocks:
                return True
            if self.free_blocks:
                sequence.blocks += 1
                self.free_blocks -= 1
            else:
                self._preempt(self._running[-1])
        return await self._until_running(sequence, gone)

    def leave(self, sequence: Sequence) -> None:
        """Finished or aborted: out of the batch (its blocks freed for those waiting) or the queue."""
        if sequence in self._running:
            self._running.remove(sequence)
            self.free_blocks += sequence.blocks
            sequence.blocks = 0
        elif sequence in self._waiting:
            self._waiting.remove(sequence)
        self._schedule()

    # -- the rules ---------------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Admits waiting sequences, in order, while the batch and the cache have room."""
        adapters = {s.adapter for s in self._running if s.adapter}
        passed_over: list[Sequence] = []
        while self._waiting and len(self._running) < self.max_num_seqs:
            sequence = self._waiting[0]
            if sequence.adapter and sequence.adapter not in adapters and len(adapters) >= self.max_loras:
                passed_over.append(self._waiting.popleft())  # as vLLM does: the ones behind may go
                continue
            needed = self._blocks_for(sequence)
            if needed > self.free_blocks:
                break  # the cache is full: first come, first served
            self._waiting.popleft()
            sequence.blocks, self.free_blocks = needed, self.free_blocks - needed
            self._running.append(sequence)
            if sequence.adapter:
                adapters.add(sequence.adapter)
            assert sequence.admitted is not None
            sequence.admitted.set_result(None)
        self._waiting.extendleft(reversed(passed_over))

    def _preempt(self, sequence: Sequence) -> None:
        """Back to the head of the queue, its blocks given up."""
        self._running.remove(sequence)
        self.free_blocks += sequence.blocks
        sequence.blocks = 0
        self.preemptions += 1
        self._enqueue(sequence, first=True)

    def _enqueue(self, sequence: Sequence, *, first: bool = False) -> None:
        sequence.admitted = asyncio.get_running_loop().create_future()
        if first:
            self._waiting.appendleft(sequence)
        else:
            self._waiting.append(sequence)

    def _blocks_for(self, sequence: Sequence) -> int:
        """The blocks its prompt and output take (recomputed whole after a preemption)."""
        return -(-(sequence.prompt_tokens + sequence.written) // self.block_size)

    @staticmethod
    async def _until_running(sequence: Sequence, gone: asyncio.Event | None) -> bool:
        admitted = sequence.admitted
        assert admitted is not None
        if admitted.done():
            return True
        if gone is None:
            await admitted
            return True
        left = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait((admitted, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
        return admitted.done()
