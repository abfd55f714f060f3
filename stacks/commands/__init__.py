"""distrilab subcommands: every module here has `register(subparsers) -> None` (see stacks/cli.py).

Every command module is imported on every `distrilab` run (to build the parser), so keep
module-level imports light: import heavy libraries (cdktn, boto3, pylxd, networkx) inside
the handler that needs them.
"""
