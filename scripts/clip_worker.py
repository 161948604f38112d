#!/usr/bin/env python
"""Stand-alone CLIP zero-shot occlusion worker: probability of each occlusion domain per crop.

    python clip_worker.py QUEUE.json RESULTS.json

Needs only torch and open_clip (the `clip` extra, envs/clip.yaml). The model and pretrained tag come
from the queue's settings (config curation.occlusion); pretrained null gives random weights, which only
tests use. For each crop, softmax over every prompt (CLIP's logit scale) and sum per domain: the
result has one probability per domain (mask, sunglasses, neutral, ...). Resumable: finished crops are flushed
to RESULTS.json.partial and skipped on restart.
"""
import os
import sys
import time

from worker_io import atomic_json as _atomic_json
from worker_io import load_queue


def load_model(model_name, pretrained, device):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained or None)
    model.eval().to(device)
    return model, preprocess, open_clip.get_tokenizer(model_name)


def main(queue_path, results_path):
    try:
        import open_clip  # noqa: F401  (checked here, not when the workflow is parsed: see rules/curation.smk)
        import torch
    except ImportError as exc:
        # enabled: auto with an interpreter that lacks the optional extra: the occlusion plan records why
        _atomic_json(results_path, {"worker": "clip", "python": sys.executable, "results": None,
                                    "skipped": f"could not run: open_clip is not importable by {sys.executable} "
                                               f"({exc}); install the clip extra there (pip install "
                                               "'facesets[clip]') or set curation.occlusion.enabled: off"})
        print(f"clip: skipped, open_clip is not importable ({exc})", file=sys.stderr)
        return
    from PIL import Image

    queue, s, done, partial = load_queue(queue_path, results_path)
    device = "cuda" if torch.cuda.is_available() and s.get("device", "auto") != "cpu" else "cpu"
    model, preprocess, tokenizer = load_model(s["model"], s["pretrained"], device)
    domains = list(s["prompts"])
    prompts = [p for d in domains for p in s["prompts"][d]]
    owner = [d for d in domains for _ in s["prompts"][d]]
    with torch.no_grad():
        text = model.encode_text(tokenizer(prompts).to(device))
        text = text / text.norm(dim=-1, keepdim=True)
    todo = [it for it in queue["items"] if it["id"] not in done]
    t0 = time.time()
    for start in range(0, len(todo), s["batch_size"]):
        batch = todo[start:start + s["batch_size"]]
        imgs, ok = [], []
        for it in batch:
            try:
                imgs.append(preprocess(Image.open(it["path"]).convert("RGB")))
                ok.append(it)
            except Exception as exc:  # an unreadable crop is recorded, not fatal
                done[it["id"]] = {"error": str(exc)}
        if imgs:
            with torch.no_grad():
                feats = model.encode_image(torch.stack(imgs).to(device))
                feats = feats / feats.norm(dim=-1, keepdim=True)
                probs = (100.0 * feats @ text.T).softmax(dim=-1).cpu().numpy()
            for it, row in zip(ok, probs):
                per = {d: 0.0 for d in domains}
                for p, d in zip(row.tolist(), owner):
                    per[d] += p
                done[it["id"]] = {d: round(v, 6) for d, v in per.items()}
        _atomic_json(partial, {"settings": s, "results": done})
        n = start + len(batch)
        print(f"clip: {n}/{len(todo)} ({n / (time.time() - t0):.1f} img/s)", file=sys.stderr, flush=True)
    _atomic_json(results_path, {"worker": "clip", "python": sys.executable, "device": device, "settings": s,
                                "results": done})
    if os.path.exists(partial):
        os.remove(partial)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
