"""Registered applications (OAuth clients) and the authorization-code flow they sign in with."""
