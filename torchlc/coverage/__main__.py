"""``python -m torchlc.coverage``: see :mod:`torchlc.coverage`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
