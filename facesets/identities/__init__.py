"""The cache -> identities: clustering, refine, stable numbering, hand-sorted folders, eras, enrich, dedup, evaluation, sweeps."""
