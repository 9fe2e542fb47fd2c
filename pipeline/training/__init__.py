"""Training the learned detector: scenes, real-pair implants, chip sampling, the loop itself."""
