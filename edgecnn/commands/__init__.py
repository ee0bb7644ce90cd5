"""One module per `edgecnn` subcommand: `add_arguments(parser)` and `run(args) -> int`.

Parsing only; the work is done by the public Python API.  Keep imports of heavy packages
inside `run`.
"""
