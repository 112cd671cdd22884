"""What one training run is made of: flags and presets, the run folder, setup, the learner loop, the final report."""
