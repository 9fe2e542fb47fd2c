"""eoleads' pipeline. `detectors` is imported first, so that the options it sets for torch's CPU
allocator (huge pages) are in place before anything here allocates a tensor."""

import detectors  # noqa: F401
