"""Allow ``python -m zeroshot``."""

import sys

from zeroshot.cli import main

sys.exit(main())
