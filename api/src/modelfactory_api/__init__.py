"""Model Factory's shared API types."""
