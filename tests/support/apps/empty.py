"""An app module that registers no workers (for the "no workers registered" startup error)."""
