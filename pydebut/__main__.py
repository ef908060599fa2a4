"""``python -m pydebut``: the same command line as the ``pydebut`` script."""

import sys

from .cli import main

sys.exit(main())
