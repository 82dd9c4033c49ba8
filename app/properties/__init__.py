"""Per-user properties: named JSON values."""
