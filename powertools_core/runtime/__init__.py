"""The worker runtime: producers, fetch/ack, wake-ups, and the leader's periodic duties.

Embedding it (``powertools worker run`` does exactly this)::

    from powertools_core.runtime import Runtime, RuntimeConfig

    runtime = Runtime(RuntimeConfig(url=url, prefix="public", queues={"default": 10}))
    await runtime.run()          # until SIGTERM/SIGINT, then drain

Other capabilities plug in through ``register_duty_provider`` (leader duties) and rely on
``release`` (give claimed, unstarted jobs back, fenced).
"""

from powertools_core.runtime.config import RuntimeConfig
from powertools_core.runtime.duties import LeaderDuty
from powertools_core.runtime.leader import DutyContext, register_duty_provider
from powertools_core.runtime.release import release
from powertools_core.runtime.supervisor import Runtime

__all__ = [
    "DutyContext",
    "LeaderDuty",
    "Runtime",
    "RuntimeConfig",
    "register_duty_provider",
    "release",
]
