"""Users, their permission policies and linked identities."""
