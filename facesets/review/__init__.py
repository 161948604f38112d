"""The person's decisions (names, merges, removals, vetoes): the decisions file, how each stage applies its
part of it, and the local review page that writes it."""
