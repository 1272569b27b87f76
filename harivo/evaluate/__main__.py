"""`python -m harivo.evaluate [--quick] [--json FILE]`: see `harivo.evaluate` and `harivo.evaluate.cli`."""

import sys

from harivo.evaluate.cli import main

sys.exit(main())
