"""``simmta serve``: the TUI in browsers (textual-serve's pieces, our checks; see server)."""
