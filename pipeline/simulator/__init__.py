"""Synthetic Sentinel-2 scenes of the Hulun Lake shore with planted changes and permits, written as
real GeoTIFFs and GeoPackages; changes implanted into real pairs for training."""
