"""Readers for the benchmarks' public on-disk formats -> `EvalSample`s, one module per dataset family."""

from . import mbench, mimic_cxr, mimic_iii, vqa
from .base import READERS, EvalSample, dataset_options, read_dataset, read_jsonl, reader
from .mbench import read_mbench
from .mimic_cxr import report_section, section_text
from .mimic_iii import load_mimic_iii_tables, mimic_iii_pair
from .vqa import hf_copy_clean

__all__ = [
    "READERS",
    "EvalSample",
    "dataset_options",
    "hf_copy_clean",
    "load_mimic_iii_tables",
    "mbench",
    "mimic_cxr",
    "mimic_iii",
    "mimic_iii_pair",
    "read_dataset",
    "read_jsonl",
    "read_mbench",
    "reader",
    "report_section",
    "section_text",
    "vqa",
]
