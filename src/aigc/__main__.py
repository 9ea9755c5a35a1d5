"""``python -m aigc`` runs the CLI."""

import sys

from aigc._cli import main

sys.exit(main())
