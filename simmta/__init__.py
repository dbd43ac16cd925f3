"""simmta: a real Postfix-style MTA, instrumented, for teaching how an MTA is built.

The package is tiered like Postfix's source tree: ``simmta.core`` knows the mail
system's shared pieces (configuration, services table, queue files, IPC, events,
privilege) and never imports Textual; ``simmta.daemons`` holds one module per
daemon on one shared skeleton; ``simmta.tools`` holds the command-line tools;
``simmta.tui`` draws what the event stream tells it.
"""

__version__ = "0.1.0"
