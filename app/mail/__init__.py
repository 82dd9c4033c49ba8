"""Outgoing mail: delivery rows written in the request's transaction, sent by the worker."""
