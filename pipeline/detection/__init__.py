"""From a scene to change polygons: tiling, the batched detector call and blending, the one
decision rule, the one probability encoding and its GeoTIFF writer, and vectorising."""
