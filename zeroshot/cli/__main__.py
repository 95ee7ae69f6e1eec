"""Allow ``python -m zeroshot.cli``."""

import sys

from zeroshot.cli import main

sys.exit(main())
