"""The TUI's views, one small module each; each renders the shared Model."""
