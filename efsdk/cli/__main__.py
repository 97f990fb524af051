"""``python -m efsdk.cli``: the same entry point as the ``efsdk`` script."""

import sys

from efsdk.cli import main

sys.exit(main())
