"""Model Factory's operator: reconciles TrainingJob and ModelService resources."""
