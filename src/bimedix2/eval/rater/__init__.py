"""Clinician rating of the conversation pairs: the anonymised sheet and its key, the per-rater rating
files, the local web rater page, and the raters' agreement and win/tie/loss."""
