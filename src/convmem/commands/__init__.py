"""CLI subcommands; see convmem.cli for the contract each module follows."""
