"""The engine: decoding, features, the SQLite store and the FAISS index.

Heavy imports (torch, faiss, numpy) live here and only here.
"""
