"""The single place the package version lives (read by hatch at build time)."""

__version__ = "0.1.0"
