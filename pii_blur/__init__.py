"""pii-blur: find faces and licence plates in photos and blur them, at any scale."""

__version__ = "0.1.0"
