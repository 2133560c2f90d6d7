"""NLTK WordNet for METEOR, built from Debian's packages, never downloaded at run time.

Debian's `wordnet-base` and `wordnet-sense-index` ship WordNet 3.0 in /usr/share/wordnet
(installed by scripts/system-deps.sh). NLTK's WordNet reader wants them as
`<nltk_data>/corpora/wordnet/` plus a `lexnames` file, which Debian does not ship, so we copy
the files (copies, not symlinks: the cache must survive the package being removed) and write
`lexnames` from the 45 lexicographer file names of WordNet 3.0 (lexnames(5WN)).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import EvalDataError

DEBIAN_WORDNET = Path("/usr/share/wordnet")
WORDNET_FILES = (
    "adj.exc",
    "adv.exc",
    "noun.exc",
    "verb.exc",
    "cntlist.rev",
    "data.adj",
    "data.adv",
    "data.noun",
    "data.verb",
    "index.adj",
    "index.adv",
    "index.noun",
    "index.verb",
    "index.sense",
)
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def default_nltk_dir() -> Path:
    """$BIMEDIX2_NLTK_DATA, else ~/.cache/bimedix2/nltk_data."""
    env = os.environ.get("BIMEDIX2_NLTK_DATA")
    return Path(env) if env else Path.home() / ".cache" / "bimedix2" / "nltk_data"


def lexnames_text() -> str:
    """The `lexnames` file: "NN\\tname\\tcategory" per line, as in WordNet's dict/lexnames."""
    return "".join(f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def setup_wordnet(target: Path | None = None, source: Path = DEBIAN_WORDNET) -> Path:
    """Copy WordNet 3.0 into `<target>/corpora/wordnet/` (idempotent); returns the NLTK data dir."""
    target = target or default_nltk_dir()
    wordnet = target / "corpora" / "wordnet"
    if (wordnet / "lexnames").is_file() and all((wordnet / f).is_file() for f in WORDNET_FILES):
        return target
    missing = [f for f in WORDNET_FILES if not (source / f).is_file()]
    if missing:
        raise EvalDataError(
            f"WordNet 3.0 files are missing from {source} ({', '.join(missing[:4])}...): METEOR needs them. "
            "Install Debian's packages: `apt-get install wordnet-base wordnet-sense-index` "
            "(scripts/system-deps.sh does it), then run `bimedix2 eval setup-nltk`."
        )
    staging = wordnet.with_name("wordnet.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in WORDNET_FILES:
        shutil.copyfile(source / name, staging / name)
    (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
    shutil.rmtree(wordnet, ignore_errors=True)
    staging.rename(wordnet)  # nothing half-written is left under corpora/wordnet
    return target


def ensure_nltk_data() -> Path:
    """Build the data dir if needed and put it first on nltk.data.path."""
    import nltk

    target = setup_wordnet()
    if str(target) not in nltk.data.path:
        nltk.data.path.insert(0, str(target))
    return target
