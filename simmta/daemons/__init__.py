"""One module per daemon, each a small handler handed to ``simmta.core.skeleton``."""
