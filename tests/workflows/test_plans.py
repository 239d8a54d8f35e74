"""The hot-path connections plan without sequential scans.

Right after a table is truncated or filled, and while a wide fan-in owns most edges, the
planner's estimates are far off, and a cached plan that scans a whole table per probe made
workflow drains 10-50x slower (``python -m bench.workflow_plans`` shows it). Every statement
on the fetch and ack connections reaches its rows through an index, so those connections price
sequential scans out; the others keep the server's setting.
"""

from __future__ import annotations

import asyncio

from powertools_core.config import Settings
from powertools_core.runtime.base import ConnectionSlot
from powertools_core.runtime.supervisor import Runtime
from tests.runtime.helpers import config_for


async def _seqscan(slot: ConnectionSlot) -> str:
    try:
        conn = await slot.get()
        cur = await conn.execute("SHOW enable_seqscan")
        row = await cur.fetchone()
        assert row is not None
        return str(row[0])
    finally:
        await slot.reset()


def test_the_fetch_and_ack_connections_price_out_sequential_scans(installed: Settings) -> None:
    runtime = Runtime(config_for(installed), discover=False)
    assert asyncio.run(_seqscan(runtime.fetch)) == "off"
    assert asyncio.run(_seqscan(runtime.acker.slot)) == "off"
    assert asyncio.run(_seqscan(runtime.maint)) == "on"
    assert asyncio.run(_seqscan(runtime.admission_slot)) == "on"


def test_a_reconnected_hot_path_connection_is_planned_the_same_way(installed: Settings) -> None:
    """The setting is per session: a connection opened again after a drop gets it again."""
    assert installed.database_url

    async def scenario() -> tuple[str, str]:
        slot = ConnectionSlot(installed.database_url or "", "ack", by_key=True)
        first = await _seqscan(slot)  # resets (closes) the connection afterwards
        return first, await _seqscan(slot)

    assert asyncio.run(scenario()) == ("off", "off")
