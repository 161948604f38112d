"""Shared pieces every stage uses: config, results layout, atomic writes, locks, logging, errors, image I/O and the face engine."""
