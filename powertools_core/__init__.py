"""powertools: operations toolkit and worker runtime for PostgreSQL job queues on Oban's schema.

The public API is importable from here (a facade, like Oban's top-level module).
"""

from powertools_core.config import Settings, load_settings
from powertools_core.errors import PowertoolsError
from powertools_core.limits.declarations import ConcurrencyLimit, RateLimit
from powertools_core.version import __version__

__all__ = [
    "ConcurrencyLimit",
    "PowertoolsError",
    "RateLimit",
    "Settings",
    "__version__",
    "load_settings",
]
