"""The model: pictures in, descriptors and pixel-check scores out.

Two processes share this package. The daemon imports only the light part: ``api`` (the
interface the engine uses), ``spec`` (a model's id and sizes without torch), ``client``
(the worker process, started on demand and replaced when it crashes or hangs), ``wire``
(their messages) and ``verify``'s constants. The worker (``worker``) runs ``local``:
``decode`` threads (camera RAWs: ``raw``, ``raw_container``), the network (``features``,
``efficientnet_lite``: torch) and the pixel checks (``verify``: OpenCV); ``memory`` gives
back what big pictures took.
``--no-daemon`` runs ``local`` in its own process.
"""
