"""``python -m helix.mock``: run the mock provider."""

from .server import main

raise SystemExit(main())
