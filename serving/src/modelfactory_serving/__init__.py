"""Model Factory's model server.

Layers, each importing only those below it:
  app (HTTP routes, middleware) -> dataplane, codec, batcher (transport-free) ->
  model (the runtime of one verified model) -> artifact (loading and verification).
"""
