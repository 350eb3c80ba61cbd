"""pgwarden: a policy-as-code gateway for Postgres (the enforcement point)."""

__version__ = "0.1.0"
