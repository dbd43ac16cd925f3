"""How simmta starts a Python child: the installed simmta, whatever the current directory.

``python -m`` puts the current directory first on ``sys.path``; run from the
parent of a clone, ``import simmta`` then finds the clone folder (a namespace
package without the data files) before an editable install's finder is asked.
``-P`` (Python 3.11) leaves the current directory out and keeps PYTHONPATH,
which the tests and the helpers rely on (``-I`` would drop it too).

Trust: argv only.
"""

import sys


def python_module(module: str, *args: str) -> list[str]:
    """argv for ``python -P -m module args...`` with this interpreter."""
    return [sys.executable, "-P", "-m", module, *args]
