"""The `cloudscale` command."""
