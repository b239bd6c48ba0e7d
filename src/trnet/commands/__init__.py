"""The `trnet` sub-commands, one module each: `add_arguments(parser)` and `run(args) -> int`.

A command module imports only light modules at its top, so that `trnet COMMAND --help` never
loads torch; its `run` imports the library it drives. `trnet/cli.py` registers every module
here by name and owns the error path (docs/architecture.md)."""
