"""Model Factory's model server.

Layers, each importing only those below it (the serving contract in .importlinter keeps them):
  main -> rest (FastAPI app, routes, middleware, transport, errors) ->
  dataplane (transport-free), routing (rollout split and mirror) ->
  codec (v2 and v1 requests, tensors, features), batcher, drift_monitor ->
  model (the runtime of one verified model, over modelfactory_artifacts.predict).
settings, metrics, errors, logs, cpus, health and schemas may be used from any layer.
"""
