"""``python -m demeter_storage.cli``: the same as the ``demeter-storage`` command."""

from demeter_storage.cli import run

run()
