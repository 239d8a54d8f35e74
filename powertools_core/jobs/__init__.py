"""Jobs: the row model, states, and (in submodules) insert and the queries operators use."""

from powertools_core.jobs.model import Job

__all__ = ["Job"]
