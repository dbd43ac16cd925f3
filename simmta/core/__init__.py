"""The shared tier: everything the daemons, the tools and the UI have in common.

Nothing in here imports Textual; the daemons run on this alone.
"""
