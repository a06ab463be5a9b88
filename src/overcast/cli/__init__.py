"""The `overcast` command-line client: Typer commands over overcast.client, Rich output."""
