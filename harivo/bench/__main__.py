"""`python -m harivo.bench [--quick] --json FILE`: see `harivo.bench`."""

import sys

from harivo.bench import main

sys.exit(main())
