"""zachot stand-in: an HTTP API and a Dramatiq worker sharing one Redis."""

__version__ = "1.2.0"
