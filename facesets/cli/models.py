"""Set-up subcommands: `models` (list and check model packs; the pipeline's model step) and `demo-setup`."""
from __future__ import annotations

from pathlib import Path

from facesets.cli.common import command, settings, settings_flags
from facesets.core import inputs, models
from facesets.core.errors import ModelPackError


def _summary(pack: models.Pack) -> str:
    tasks = ", ".join(f"recognition {pack.embedding_width}-d" if t == "recognition" and pack.embedding_width else t
                      for t in sorted(pack.tasks, key=lambda t: (t not in models.REQUIRED, t)))
    name = pack.spec if Path(pack.spec).expanduser().resolve() == pack.folder else f"{pack.spec} ({pack.folder})"
    return f"{name}: OK ({tasks})"


def _show(spec: str, root: str) -> bool:
    """Print one pack: its folder, each model file with its task and OK / the problem. True when usable."""
    try:
        folder = models.locate(spec, root)
    except ModelPackError as exc:
        print(f"{spec}: not usable: {exc.one_line()}")
        return False
    pack = models.inspect(folder, spec)
    try:
        pack.require()
        print(_summary(pack))
        ok = True
    except ModelPackError as exc:
        print(f"{spec}: not usable: {exc.one_line()}")
        ok = False
    print("\n".join(models.listing(pack)))
    return ok


def _installed(root: str) -> list[str]:
    folder = Path(root).expanduser() / "models"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def cmd_models(args) -> int:
    m = settings(args)["model"]
    if args.out:
        inputs.needed(args.check, "models --out", "--check PACK", "the pack whose record --out is")
    if args.check:
        pack = models.ensure(args.check, m["root"], download=not args.offline)
        if args.out:
            from facesets.core import atomic

            atomic.write_json(args.out, models.describe(pack))
        print(_summary(pack))
        return 0
    specs = args.packs or list(dict.fromkeys([m["pack"], *_installed(m["root"])]))
    ok = [_show(spec, m["root"]) for spec in specs]
    return 0 if all(ok) else 1


def cmd_demo_setup(args) -> int:
    from facesets.cli.demo import setup_demo

    print(setup_demo(Path(args.folder), pack=args.model_pack))
    return 0


def register(sub) -> None:
    p = command(sub, "models", cmd_models, "list model packs and check them (each model file, its task, OK or the "
                "problem); exit 1 when a pack is unusable")
    p.add_argument("packs", nargs="*", metavar="PACK",
                   help="pack folder, or name of a pack under --model-root (default: model.pack and every "
                        "installed pack)")
    p.add_argument("--check", metavar="PACK", help="(pipeline) make PACK available once, downloading a named pack "
                   "that is not installed, check it, and write --out")
    p.add_argument("--out", metavar="JSON", help="with --check: write the resolved folder, each model file "
                   "(size, sha256) and the embedding width here")
    p.add_argument("--offline", action="store_true", help="with --check: never download; a missing pack is an error")
    p.add_argument("--model-root", dest="model__root", metavar="DIR", default=None,
                   help="where named packs are installed (default ~/.insightface; packs in DIR/models/NAME)")
    settings_flags(p)

    p = command(sub, "demo-setup", cmd_demo_setup, "prepare the offline demo photos and config overlay in FOLDER")
    p.add_argument("folder", metavar="FOLDER", help="where the demo photos and config.yaml go")
    p.add_argument("--model-pack", metavar="PACK", help="pack folder (default: $FACESETS_PACK, else buffalo_l)")
