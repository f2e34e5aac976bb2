"""Model Factory's training runtime: Ray Tune search over scikit-learn pipelines."""
