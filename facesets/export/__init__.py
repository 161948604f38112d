"""Identities -> swap-ready crops and .fsz bundles: framing, ranking, verification against roop's contract."""
