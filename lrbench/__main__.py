"""``python -m lrbench`` (and ``torchrun -m lrbench``): the ``lrbench`` command."""

import sys

from .cli import main

sys.exit(main())
