"""The read side of docs/contracts.md: published files, their identity, metadata, extents and blobs."""
