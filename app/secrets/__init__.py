"""Per-user secrets, encrypted at rest with the key ring."""
