"""Overcast: an open platform-as-a-service speaking the Cloud Foundry v3 API."""

__version__ = "0.1.0"
