"""kdlib."""
