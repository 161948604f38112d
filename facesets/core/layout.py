"""Where every stage's output lives under the results folder: the one place that spells the layout out.

The rules, the report, the audit and undo all read their paths from here, so moving a file means
changing one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    results: Path

    def __init__(self, results: str | Path):
        object.__setattr__(self, "results", Path(results))

    # embed
    @property
    def cache_dir(self) -> Path:
        return self.results / "cache"

    @property
    def cache(self) -> Path:
        return self.cache_dir / "faces.npz"

    @property
    def cache_csv(self) -> Path:
        return self.cache_dir / "faces.csv"

    @property
    def store(self) -> Path:
        return self.cache_dir / "store"

    @property
    def model_check(self) -> Path:
        """The model pack, resolved and checked once before any shard runs (`facesets models --check`)."""
        return self.cache_dir / "model.json"

    @property
    def detections(self) -> Path:
        """Detections of crops by content, shared by the crop checks and both verifies (export.verdicts)."""
        return self.cache_dir / "detections.sqlite"

    @property
    def listing(self) -> Path:
        return self.cache_dir / "listing"

    @property
    def shard_summaries(self) -> Path:
        return self.cache_dir / "shards"

    @property
    def duplicates(self) -> Path:
        return self.cache_dir / "faces.duplicates.json"

    @property
    def enrich(self) -> Path:
        return self.cache_dir / "enrich.npz"

    @property
    def exif_years(self) -> Path:
        """path -> EXIF year, kept across era re-runs (not a rule output)."""
        return self.cache_dir / "exif_years.json"

    # identities
    @property
    def raw(self) -> Path:
        return self.results / "identities" / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw / "manifest.json"

    @property
    def refined(self) -> Path:
        return self.results / "identities" / "facesets"

    @property
    def refine_manifest(self) -> Path:
        return self.refined / "refine_manifest.json"

    @property
    def evaluation(self) -> Path:
        """The final corpus scored against `evaluate.labels`, with the loss table."""
        return self.results / "evaluation.json"

    @property
    def folders_manifest(self) -> Path:
        return self.results / "identities" / "folders" / "folders_manifest.json"

    @property
    def eras_manifest(self) -> Path:
        return self.results / "identities" / "eras" / "eras_manifest.json"

    # export and curation
    @property
    def export(self) -> Path:
        return self.results / "export"

    @property
    def export_manifest(self) -> Path:
        return self.export / "manifest.json"

    @property
    def crops_index(self) -> Path:
        return self.export / "crops.json"

    @property
    def verify_export(self) -> Path:
        return self.export / "verify.json"

    @property
    def curation(self) -> Path:
        return self.results / "curation"

    @property
    def plans(self) -> Path:
        return self.curation / "plans"

    @property
    def applied(self) -> Path:
        """The apply rule's output: present exactly while the corpus holds an applied state."""
        return self.curation / "applied.json"

    @property
    def verify_corpus(self) -> Path:
        return self.curation / "verify.json"

    @property
    def corpus(self) -> Path:
        return self.results / "facesets_swap_ready"

    @property
    def corpus_manifest(self) -> Path:
        return self.corpus / "manifest.json"

    # the rest
    @property
    def sweeps(self) -> Path:
        return self.results / "sweeps"

    @property
    def report_dir(self) -> Path:
        return self.results / "report"

    @property
    def review(self) -> Path:
        """The review page's own files (its thumbnail cache): made by `facesets review`, never by a rule."""
        return self.results / "review"

    @property
    def logs(self) -> Path:
        return self.results / "logs"

    @property
    def run_lock(self) -> Path:
        """Held by the Snakemake run that works on this results folder (see facesets.core.runlock)."""
        return self.results / ".facesets-run.lock"

    @classmethod
    def of_corpus(cls, corpus: str | Path) -> "Layout | None":
        """The layout a pipeline's corpus sits in; None for a corpus made by hand elsewhere."""
        corpus = Path(corpus).resolve()
        layout = cls(corpus.parent)
        return layout if layout.corpus == corpus else None
