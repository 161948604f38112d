"""What the pipeline tells a user when something needs their action: one line each, saying what failed
and what to do. Kept in one place so the wording is consistent and tests can match it."""

RUN_LOCKED = ("{results} is in use by another facesets run ({holder}); wait for it to finish or stop it "
              "(do not use --unlock while it runs)")
STALE_LOCK_CLEARED = ("cleared Snakemake's lock left by a run that was killed (no live run holds {results}); "
                      "the run resumes where the killed one stopped")
LIVE_LOCK = ("Snakemake's lock on {results} belongs to a live run ({holder}): wait for it to finish or stop it; "
             "do not use --unlock")

# ---------------------------------------------------------------- model packs (facesets.core.models)
PACK_FOLDER_MISSING = ("model pack folder {path} not found: point model.pack (or --model-pack) at a folder that "
                       "holds a face detector and a recognizer .onnx, or name an installed pack such as buffalo_l")
PACK_NOT_A_FOLDER = "model pack {path} is a file, not a folder: point model.pack at the folder that holds the .onnx files"
PACK_UNREADABLE = "model pack folder {path} cannot be read ({reason}): give this user read access to it"
PACK_INCOMPLETE = ("model pack {folder} has no {missing} (it has: {has}): add the missing .onnx to the folder, or "
                   "point model.pack at a complete pack such as buffalo_l")
PACK_NOT_INSTALLED = ("model pack {name!r} is not installed ({folder} not found) and facesets does not download it "
                      "while a stage runs: point model.pack at a pack folder, or download it on a connected machine "
                      "into {folder} (`facesets models --check {name}` does that)")
PACK_DOWNLOAD_FAILED = ("could not download model pack {name!r} into {folder} ({reason}): point model.pack at a pack "
                        "folder, or download it on a connected machine into {folder}")
PACK_NAME_INVALID = ("model pack name {name!r} is neither a folder nor a plain pack name: point model.pack at an "
                     "existing pack folder or name a pack such as buffalo_l")

# ---------------------------------------------------------------- the face worker (facesets.core.worker_route)
WORKER_NOT_FOUND = ("worker interpreter {python} cannot be run ({reason}): point workers.python (your profile's "
                    "workers.yaml) at the python of a venv with numpy, opencv-python, pillow, onnxruntime and insightface")
WORKER_CANNOT_START = "worker interpreter {python} cannot run the {task} worker: {what}"
WORKER_DIED = ("the {task} worker in {python} stopped after {done} of {total} items ({what}); its partial results "
               "are kept: run again to resume")

# ---------------------------------------------------------------- inputs (facesets.core.inputs)
SOURCE_MISSING = ("source folder {path} not found: fix the source's path (config sources[].path) or mount the "
                  "drive it is on")
SOURCE_NOT_A_FOLDER = "source {path} is not a folder: sources[].path must name the folder the photos are under"
SOURCE_UNREADABLE = ("source folder {path} cannot be read ({reason}): give this user read access to it or fix "
                     "sources[].path")
INPUT_MISSING = "{what} {path} not found: {fix}"
OPTION_NEEDED = "`facesets {cmd}` needs {option} ({what})"
JSON_MALFORMED = "{what} {path} is not valid JSON ({reason}): {fix}"
JSON_UNEXPECTED = "{what} {path} is not {expected} ({reason}): {fix}"
SETTINGS_MALFORMED = "{flag} is not a JSON object ({reason}): pass the settings as one JSON object"
PLAN_FIX = "re-create it with `facesets plan` (or `snakemake plans`), or remove it from the command"

# ---------------------------------------------------------------- the person's decisions (facesets.review)
DECISIONS_INVALID = "decisions file {path} is not valid (fix or remove the entries named):\n{problems}"
DECISIONS_UNREADABLE = ("decisions file {path} cannot be read ({reason}): fix the YAML, or remove the file for "
                        "no decisions")
DECISIONS_PART = "--decisions is not a JSON object of decisions ({reason}): pass what the pipeline's rule passes"
REVIEW_LOCKED = ("a pipeline run holds {results} ({holder}): the decision was not written; make it again when the "
                 "run has finished")

# ---------------------------------------------------------------- the CLI's own reporting
UNEXPECTED = "facesets {cmd} failed: {exc}; the traceback is in {log} (or run with -v)"
UNEXPECTED_VERBOSE = "facesets {cmd} failed: {exc}; the traceback is above"
UNEXPECTED_NO_LOG = "facesets {cmd} failed: {exc}; run it again with -v (or --log FILE) for the traceback"

# the occlusion filter: switched off by the person, or unable to run (which must never look the same)
OCCLUSION_OFF = "occlusion filter off (curation.occlusion.enabled: off)"
SWEEP_KEY = ("sweep.params key {key!r} is not a numeric setting of {sections}: use a key that config/config.yaml "
             "sets to a number, e.g. refine.merge_threshold or curation.neardup.similarity")
SWEEP_WHOLE = "sweep.params {key}: {values} holds a fraction, but {key} is a whole number: sweep whole values"
OCCLUSION_CANNOT_RUN = ("could not run: open_clip is not importable by {python}; install the clip extra there "
                        "(pip install 'facesets[clip]', or make test-clip) or set curation.occlusion.enabled: off")
