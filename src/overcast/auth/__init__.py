"""Users, passwords, tokens (UAA-compatible token endpoint) and the identity of a caller."""
