"""verticalize: turn a general LLM into a measured, served, monitored vertical-domain model."""

__version__ = "0.1.0"
