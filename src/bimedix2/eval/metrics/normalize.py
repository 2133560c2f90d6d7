"""Text normalisation used where metrics compare text.

`multimedeval_clean` reproduces MultiMedEval's `clean_str` bit for bit, quirks included
(corentin-ryr/MultiMedEval, multimedeval/utils.py `clean_str`, itself derived from the
official VQA evaluation script), so VQA numbers compare with the BiMediX2 paper's Table 5.
`normalize_arabic` is our own, used only by the labelled "improved" mode.
"""

from __future__ import annotations

import re
import unicodedata

# ---------------------------------------------------------------- MultiMedEval's clean_str
# utils.py `manual_map`: number words -> digits ("none" -> "0" too).
_MANUAL_MAP = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = ("a", "an", "the")
# utils.py `period_strip` = r"(?!<=\d)(\.)(?!\d)": the "(?!<=\d)" is a typo for a look-behind,
# so in effect every "." not followed by a digit is removed. Kept as is for parity.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")

# utils.py `contractions` (the VQA-eval table), rebuilt from its rule instead of copied: a token
# written without its apostrophes maps to the contraction; a form with two or more apostrophes
# is matched only with exactly one of them dropped (the table has "couldnt've" and "couldn'tve"
# but not "couldntve"). Entries that can never fire after lower-casing ("Im", "Ive", "Id've")
# and identity entries ("let's", "she's") are left out: they change nothing.
_ONE_APOSTROPHE = (
    "ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's how'd how'll "
    "how's isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock oughtn't shan't "
    "should've shouldn't somebody'll somebody's someone'd someone'll someone's something'd something'll "
    "that's there'd there're there's they'd they'll they're they've wasn't we've weren't what'll what're "
    "what's what've when's where'd where's where've who'd who'll who's who've why'll why're why's won't "
    "would've wouldn't y'all you'd you'll you're you've"
).split()
_MULTI_APOSTROPHE = (
    "couldn't've hadn't've he'd've it'd've mightn't've shouldn't've somebody'd've someone'd've "
    "something'd've there'd've they'd've we'd've she'd've who'd've wouldn't've you'd've y'all'll "
    "y'all'd've 'ow's'at"
).split()


def _contractions() -> dict[str, str]:
    table = {form.replace("'", ""): form for form in _ONE_APOSTROPHE}
    for form in _MULTI_APOSTROPHE:
        positions = [i for i, ch in enumerate(form) if ch == "'"]
        for i in positions:
            table[form[:i] + form[i + 1 :]] = form
    table["twas"] = "'twas"
    table["somebody'd"] = "somebodyd"  # the upstream table maps this one backwards; kept for parity
    return table


CONTRACTIONS = _contractions()


def multimedeval_clean(text: str) -> str:
    """MultiMedEval's `clean_str`: lower-case, strip punctuation, map number words, drop articles."""
    token = text.lower()
    cleaned = token
    for p in _PUNCT:
        # upstream tests the *original* string for "p " / " p" and for any "digit,digit" anywhere
        if (p + " " in token or " " + p in token) or _COMMA_STRIP.search(token) is not None:
            cleaned = cleaned.replace(p, "")
        else:
            cleaned = cleaned.replace(p, " ")
    # upstream passes re.UNICODE (= 32) as the positional `count`: at most 32 periods are removed
    token = _PERIOD_STRIP.sub("", cleaned, 32)
    words = [_MANUAL_MAP.get(w, w) for w in token.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    words = [CONTRACTIONS.get(w, w) for w in words]
    return " ".join(words).replace(",", "")


def token_set(text: str) -> set[str]:
    """MultiMedEval's `VQA._preprocess`: the set of whitespace tokens (duplicates collapse)."""
    return {t for t in text.split() if t}


# ------------------------------------------------------------------------ Arabic (ours)
_ARABIC_DIACRITICS = re.compile(r"[\u0610-\u061A\u064B-\u065F\u0670\u06D6-\u06DC\u06DF-\u06E8\u06EA-\u06ED]")
_TATWEEL = "\u0640"
_ARABIC_MAP = str.maketrans(
    {
        "\u0622": "\u0627",
        "\u0623": "\u0627",
        "\u0625": "\u0627",
        "\u0671": "\u0627",  # آ أ إ ٱ -> ا
        "\u0649": "\u064a",  # ى -> ي
        "\u0629": "\u0647",  # ة -> ه
        "\u0624": "\u0648",  # ؤ -> و
        "\u0626": "\u064a",  # ئ -> ي
        "\u060c": ",",
        "\u061b": ";",
        "\u061f": "?",
        "\u066a": "%",
        "\u066b": ".",
        "\u066c": ",",
        **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic digits
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # Extended (Persian) digits
    }
)


def normalize_arabic(text: str) -> str:
    """Fold Arabic spelling variants: NFKC, drop diacritics and tatweel, unify alef/yaa/taa-marbuta
    (and hamza carriers), Arabic punctuation and digits to ASCII. Latin text passes unchanged."""
    text = unicodedata.normalize("NFKC", text)
    text = _ARABIC_DIACRITICS.sub("", text).replace(_TATWEEL, "")
    return text.translate(_ARABIC_MAP)


def improved_clean(text: str) -> str:
    """The improved mode's normalisation: Arabic folding, then MultiMedEval's cleaning."""
    return multimedeval_clean(normalize_arabic(text))
