"""``python -m experiments.seed000 ...``: the same as ``lrbench seed000 ...`` from a checkout."""

import sys

from lrbench.cli import main

sys.exit(main(["seed000", *sys.argv[1:]]))
