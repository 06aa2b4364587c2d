import sys

from helix.cli import main

sys.exit(main())
