"""``python -m tradeflow.cli ...``: the same as the ``tradeflow`` script (used by `tradeflow demo`)."""

import sys

from tradeflow.cli.main import main

sys.exit(main())
