"""The ``strongroom`` command line: thin Typer commands over the library, one module per domain."""
