"""`python -m provgraph` runs the CLI."""

import sys

from provgraph.cli import main

sys.exit(main())
