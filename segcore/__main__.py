"""``python -m segcore <stage>``: the same as the ``segpretrain`` console script."""

import sys

from segcore.cli import main

sys.exit(main())
