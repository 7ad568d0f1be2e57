"""``python -m rlmem`` = the ``rlmem`` command."""

import sys

from rlmem.cli import main

sys.exit(main())
