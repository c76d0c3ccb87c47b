"""``python -m fakegateway``: run the fake Discord until SIGINT/SIGTERM."""

import sys

from fakegateway.cli import main

sys.exit(main())
