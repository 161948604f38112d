"""Source trees -> the face cache: scanning, the resumable per-shard store, the cache snapshot, EXIF dates."""
