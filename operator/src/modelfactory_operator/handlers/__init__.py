"""kopf handlers: thin; they call the reconciler."""
