"""findsimilar: an always-on local service that finds similar and duplicate photos.

This top-level package holds only light, shared code (configuration, errors);
the engine lives in :mod:`findsimilar.daemon` and the command line in
:mod:`findsimilar.cli`.
"""

__version__ = "0.1.0"
