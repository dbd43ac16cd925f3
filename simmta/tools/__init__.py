"""Command-line tools: each module registers its sub-commands with simmta.cli."""
