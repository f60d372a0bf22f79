"""``python -m featdistill`` (and ``torchrun ... -m featdistill``) runs the CLI."""

import sys

from .cli.main import main

sys.exit(main())
