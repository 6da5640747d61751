"""One module per `cgwd` subcommand."""
