"""Guided lessons: a lesson format, a goal engine over the event stream, and runners.

- ``format``: lesson files (Markdown + TOML), validated with line numbers
- ``goals``: the declarative goal language (events, state, counts, order)
- ``state``: the live MTA state rebuilt from the event stream
- ``runner``: ``LessonRunner``, the plain-Python progress API a UI shows
- ``session`` / ``autoplay``: a lesson's MTA, and ``check --autoplay``
- ``panel`` / ``app``: the Textual lesson panel and its minimal host app
- ``cli``: ``simmta lesson ...``

Trust: lesson files are teacher-written data, never code; events are
untrusted gossip that is only matched. Importing this package does not
import Textual (only ``panel`` and ``app`` do).
"""
