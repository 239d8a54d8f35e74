"""Importable worker modules for runtime tests (``--app tests.support.apps.recorder``)."""
