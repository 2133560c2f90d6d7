"""CLI command groups, one module each (see `bimedix2.cli.COMMAND_MODULES`)."""
