"""Mock LLM provider (OpenAI wire format) for Helix's tests and benchmarks.

``python -m helix.mock --port 0`` (or ``helix mock``) starts it; ``MockProcess`` runs it as a
subprocess from tests. See ``helix.mock.server`` for the controls.
"""

from .process import MockProcess

__all__ = ["MockProcess"]
