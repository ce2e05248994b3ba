"""Orkiva: the Django project (settings, urls, the API error contract, auth wiring, health)."""
