"""`modelfactory-batch`: score a dataset with a verified model version on Ray Data.

inputs (list the files, their identities, check their schema before any row is scored) →
model (the verified artifact and what runs it: ONNX Runtime or scikit-learn) → score (the Ray
Data pipeline: read, predict per actor, stream back to the driver) → output (parts in a staging
folder, committed by a move and the manifest, written last) → run (the whole, with progress and
drift) → main (the entrypoint: configuration, reporting, exit codes).
"""
