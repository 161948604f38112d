"""What the pipeline tells a user when something needs their action: one line each, saying what failed
and what to do. Kept in one place so the wording is consistent and tests can match it."""

RUN_LOCKED = ("{results} is in use by another facesets run ({holder}); wait for it to finish or stop it "
              "(do not use --unlock while it runs)")
STALE_LOCK_CLEARED = ("cleared Snakemake's lock left by a run that was killed (no live run holds {results}); "
                      "the run resumes where the killed one stopped")
LIVE_LOCK = ("Snakemake's lock on {results} belongs to a live run ({holder}): wait for it to finish or stop it; "
             "do not use --unlock")
