"""The daemon and everything it runs: ``engine`` (the façade over store, index and model),
``model`` (decoding and the network: torch only in the model worker process, or in the
calling process with --no-daemon), ``storage`` (SQLite and FAISS), ``indexing`` (folders
on disk into the store), ``dupes`` (duplicate groups) and ``service`` (the long-lived
daemon). The command line imports none of it for a search through the daemon.
"""
