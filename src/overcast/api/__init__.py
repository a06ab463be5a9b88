"""The public HTTP API: Cloud Foundry's Cloud Controller v3 shape, as a presenter over the
controller's use cases."""
