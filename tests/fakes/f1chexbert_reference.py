"""CheXbert [CLS] vectors and token ids computed by the `f1chexbert` package itself, unmodified.

f1chexbert 0.0.2 takes no model path: it loads `bert-base-uncased` (config + tokenizer) from the
Hugging Face hub and `chexbert.pth` from `appdirs.user_cache_dir("chexbert")`, downloading only
when that file is missing. `run_f1chexbert` therefore runs it in a child process whose documented
cache locations hold the tiny local files (XDG_CACHE_HOME for appdirs, HF_HUB_CACHE laid out as the
hub cache, HF_HUB_OFFLINE=1): no function of the package is patched and nothing is downloaded. The
only shim is the toolkit's `legacy_tokenizer_api` (f1chexbert calls `encode_plus`, which
transformers 5 removed).

f1chexbert exposes labels and label-F1, not the vector similarity MultiMedEval reports, so the
vectors come from its own loaded encoder (`F1CheXbert().model.bert`) on the ids of its own
`tokenize`, exactly the first half of its `get_label`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HF_REPO = "bert-base-uncased"


def hub_cache_with(cache: Path, repo_id: str, files: Path) -> Path:
    """Lay out `files` (a model directory) in `cache` as the hub cache holds a download of `repo_id`."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in files.iterdir():
        if f.is_file() and f.suffix != ".pth":
            shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def run_f1chexbert(chexbert_dir: Path, reports: list[str], work: Path) -> dict[str, list]:
    """{"ids": [...], "vectors": [...]} for each report, from f1chexbert in a child process."""
    xdg = work / "xdg"
    (xdg / "chexbert").mkdir(parents=True, exist_ok=True)
    shutil.copy(chexbert_dir / "chexbert.pth", xdg / "chexbert" / "chexbert.pth")
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(xdg),
        "HF_HUB_CACHE": str(hub_cache_with(work / "hub", HF_REPO, chexbert_dir)),
        "HF_HUB_OFFLINE": "1",
    }
    (work / "reports.json").write_text(json.dumps(reports))
    out = work / "f1chexbert.json"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, __file__, str(work / "reports.json"), str(out)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _main(reports_json: str, out_json: str) -> None:
    import pandas as pd
    import torch
    from f1chexbert import f1chexbert as package

    from bimedix2.eval.metrics.tokenizer_compat import legacy_tokenizer_api

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"f1chexbert tried to download {args} {kwargs}: the local checkpoint was not found")

    package.download_model = no_download  # a guard only: it is never called when chexbert.pth is in place
    reports = json.loads(Path(reports_json).read_text())
    with legacy_tokenizer_api(), torch.inference_mode():
        scorer = package.F1CheXbert(device="cpu")
        ids = [package.tokenize(pd.Series([r.strip()]), scorer.tokenizer)[0] for r in reports]
        vectors = []
        for row in ids:  # get_label's batch of one: ids, attention mask of ones, [CLS] of the last layer
            batch = torch.LongTensor([row])
            mask = package.generate_attention_masks(batch, [len(row)], scorer.device)
            vectors.append(scorer.model.bert(batch, attention_mask=mask)[0][0, 0, :].tolist())
    Path(out_json).write_text(json.dumps({"ids": ids, "vectors": vectors}))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
