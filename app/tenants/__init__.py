"""Tenants (organizations) and their API keys."""
