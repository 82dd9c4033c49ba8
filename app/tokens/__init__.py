"""Tokens: signing keys and JWKS, access/ID tokens, refresh rotation, custom tokens."""
