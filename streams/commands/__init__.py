"""Every ``rcaflow`` subcommand, one module each, imported only when it is run."""
