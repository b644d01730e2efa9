"""The simulated engine's batch on its own: vLLM's scheduling rules, step by step, no clock."""

from __future__ import annotations

import asyncio

from toolcall_proxy.sim.scheduler import Scheduler, Sequence


def batch(max_num_seqs: int = 2, kv_blocks: int = 100, block_size: int = 16, max_loras: int = 1) -> Scheduler:
    return Scheduler(max_num_seqs=max_num_seqs, kv_blocks=kv_blocks, block_size=block_size, max_loras=max_loras)


async def started(scheduler: Scheduler, *sequences: Sequence) -> list[asyncio.Task[bool]]:
    """Each sequence asks to be admitted, in order; the tasks end when they run."""
    tasks = []
    for sequence in sequences:
        tasks.append(asyncio.ensure_future(scheduler.admit(sequence)))
        await asyncio.sleep(0)  # its turn to queue: arrival order is the order given
    return tasks


def running(*tasks: asyncio.Task[bool]) -> list[bool]:
    return [task.done() for task in tasks]


async def test_at_most_max_num_seqs_run_and_the_rest_wait_in_arrival_order():
    scheduler = batch(max_num_seqs=2)
    sequences = [Sequence(10) for _ in range(5)]
    tasks = await started(scheduler, *sequences)
    await asyncio.sleep(0)
    assert (scheduler.running, scheduler.waiting) == (2, 3)
    assert running(*tasks) == [True, True, False, False, False]
    scheduler.leave(sequences[1])
    await asyncio.sleep(0)
    assert running(*tasks) == [True, True, True, False, False]  # the first to wait goes first
    scheduler.leave(sequences[3])  # one that waits leaves the queue (its client went away)
    scheduler.leave(sequences[0])
    await asyncio.sleep(0)
    assert running(*tasks[2:]) == [True, False, True]
    assert (scheduler.running, scheduler.waiting) == (2, 0)
    for sequence in sequences:
        scheduler.leave(sequence)
    assert (scheduler.running, scheduler.waiting, scheduler.kv_cache_usage) == (0, 0, 0)


async def test_a_full_cache_holds_the_queue_first_come_first_served():
    scheduler = batch(max_num_seqs=10, kv_blocks=10, block_size=16)
    big, small, tiny = Sequence(16 * 8), Sequence(16 * 3), Sequence(16)
    tasks = await started(scheduler, big, small, tiny)
    await asyncio.sleep(0)
    # 8 blocks taken, 2 free: the small one (3 blocks) waits, and the tiny one behind it too
    assert running(*tasks) == [True, False, False]
    assert scheduler.kv_cache_usage == 0.8
    scheduler.leave(big)
    await asyncio.sleep(0)
    assert running(*tasks) == [True, True, True]
    assert scheduler.kv_cache_usage == 0.4


async def test_the_cache_holds_the_prompt_and_what_was_written():
    scheduler = batch(kv_blocks=10, block_size=4)
    sequence = Sequence(3)
    assert await scheduler.admit(sequence)
    assert scheduler.kv_cache_usage == 0.1
    assert await scheduler.grow(sequence)  # 4 tokens: still one block
    assert scheduler.kv_cache_usage == 0.1
    assert await scheduler.grow(sequence)  # 5: a second block
    assert scheduler.kv_cache_usage == 0.2
    scheduler.leave(sequence)
    assert scheduler.kv_cache_usage == 0


async def test_a_sequence_that_outgrows_the_cache_preempts_the_last_admitted():
    scheduler = batch(max_num_seqs=5, kv_blocks=4, block_size=4)
    first, second = Sequence(8), Sequence(8)  # two blocks each: the cache is full
    assert await scheduler.admit(first)
    assert await scheduler.admit(second)
    assert await scheduler.grow(first)  # a third block for the first: the second gives up its two
    assert (scheduler.running, scheduler.waiting, scheduler.preemptions) == (1, 1, 1)
    resumed = asyncio.ensure_future(scheduler.grow(second))  # the preempted one waits for room
    await asyncio.sleep(0)
    assert not resumed.done()
    scheduler.leave(first)
    assert await resumed  # back, with its prompt and output recomputed: 10 tokens, three blocks
    assert (scheduler.running, scheduler.waiting, scheduler.kv_cache_usage) == (1, 0, 0.75)


async def test_a_sequence_with_no_room_to_grow_preempts_itself_when_admitted_last():
    scheduler = batch(max_num_seqs=5, kv_blocks=4, block_size=4)
    first, second = Sequence(8), Sequence(8)
    assert await scheduler.admit(first)
    assert await scheduler.admit(second)
    grown = asyncio.ensure_future(scheduler.grow(second))
    await asyncio.sleep(0)
    assert not grown.done() and scheduler.waiting == 1  # it gave its own blocks up
    scheduler.leave(first)
    assert await grown


async def test_an_adapter_the_batch_has_no_room_for_is_passed_over():
    scheduler = batch(max_num_seqs=5, max_loras=1)
    sql, support, base, sql_again = Sequence(4, "sql"), Sequence(4, "support"), Sequence(4), Sequence(4, "sql")
    tasks = await started(scheduler, sql, support, base, sql_again)
    await asyncio.sleep(0)
    # one adapter at a time: "support" waits; the base model and "sql" again go ahead of it
    assert running(*tasks) == [True, False, True, True]
    assert scheduler.adapters() == (["sql"], ["support"])
    scheduler.leave(sql)
    await asyncio.sleep(0)
    assert not tasks[1].done()  # "sql" still runs (sql_again)
    scheduler.leave(sql_again)
    await asyncio.sleep(0)
    assert tasks[1].done()
    assert scheduler.adapters() == (["support"], [])


async def test_a_waiting_sequence_whose_client_goes_away_is_not_admitted():
    scheduler = batch(max_num_seqs=1)
    first, second = Sequence(4), Sequence(4)
    assert await scheduler.admit(first)
    gone = asyncio.Event()
    waiting = asyncio.ensure_future(scheduler.admit(second, gone))
    await asyncio.sleep(0)
    gone.set()
    assert await waiting is False
    scheduler.leave(second)
    assert (scheduler.running, scheduler.waiting) == (1, 0)
