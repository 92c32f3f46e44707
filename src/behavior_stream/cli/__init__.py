"""`behavior-stream`: the typer app; each command imports its heavy modules inside the command."""
