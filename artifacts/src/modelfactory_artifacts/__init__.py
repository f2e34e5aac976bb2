"""The model artifact's data side: what the training data looked like (the reference profile)
and how far live data has moved from it (drift)."""
