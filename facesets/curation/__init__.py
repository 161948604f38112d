"""The export -> the curated corpus: plans, journaled apply/undo, the GPU worker staging, and the audit."""
