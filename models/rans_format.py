"""The numbers that define the rANS strings of :mod:`models.rans`, in one place.

Both coders read them: the pure-Python decoder in :mod:`models.rans` and the numba kernels in
:mod:`models.rans_kernels`. This module imports nothing, so the kernels can use it without
importing :mod:`models.rans` (no cycle) and a small stream still decodes without numba.
"""

from __future__ import annotations

__all__ = ["BAD_INDEX", "BYPASS_BITS", "ESCAPE_TOO_LONG", "MAX_BYPASS", "MAX_MAGNITUDE", "OK",
           "PRECISION", "RANS_L", "READ_PAST_END"]

#: probability precision (bits)
PRECISION = 16
#: bits per bypass chunk of an escaped value
BYPASS_BITS = 4
#: lower bound of the coder state's normalisation interval
RANS_L = 1 << 31
#: most bypass chunks of one escaped value (32 bits)
MAX_BYPASS = 32 // BYPASS_BITS
#: largest |symbol - offset| the encoder takes (its escape value must fit 32 bits)
MAX_MAGNITUDE = 2**30

#: decoder status codes
OK, READ_PAST_END, ESCAPE_TOO_LONG, BAD_INDEX = 0, 1, 2, 3
