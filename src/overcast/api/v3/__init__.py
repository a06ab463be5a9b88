"""Routes of /v3, one module per resource."""
