"""``python -m tradeflow_ops.cli ...``: the same as the ``tradeflow`` script (used by `tradeflow demo`)."""

import sys

from tradeflow_ops.cli.main import main

sys.exit(main())
