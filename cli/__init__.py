"""The command line: a thin click app. Never imports torch or faiss at module level."""
