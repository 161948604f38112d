"""The results folder -> an offline HTML report."""
