"""The only code that talks to the outside: Kubernetes API, helm, processes."""
