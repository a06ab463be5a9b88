"""The job engine: persisted, staged, leased long operations on named queues."""
