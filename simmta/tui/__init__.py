"""simmta's Textual UI: the live architecture map, views, timeline and actions.

``model`` (pure Python) holds what the event stream says; ``feed`` brings events
in (live bus or recording); ``app`` and ``widgets/`` render the model;
``launch`` is the ``simmta tui`` command. The MTA never imports this package.

Trust: everything shown comes from events, which are untrusted; it is shown
as inert text.
"""
