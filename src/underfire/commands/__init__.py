"""Subcommands of the `underfire` CLI, one module each (see underfire.cli.COMMANDS)."""
