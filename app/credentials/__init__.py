"""Credentials: passwords (and, later, reset requests, MFA enrolments, device keys)."""
