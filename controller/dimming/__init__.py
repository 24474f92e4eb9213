"""Numba-accelerated dimming kernels behind validating wrappers.

Private kernels live in ``_``-prefixed modules; import the public wrappers from here or from
their modules (``solar``, ``program``, ``levels``, ``power``, ``dali``, ``adaptive``).
"""
