"""What a run leaves behind: the GeoPackage with its QGIS styles, probability mosaics, and the run
folder that makes a run resumable."""
