"""The ``powertools`` command: parse, call powertools_core, render. No SQL, no business logic."""
