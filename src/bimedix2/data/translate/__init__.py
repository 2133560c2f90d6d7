"""English -> Arabic translation with LLM scoring, refinement and human review routing."""

from .pipeline import TranslateConfig, export_translations, run_translation, translate_record, translation_stats

__all__ = ["TranslateConfig", "export_translations", "run_translation", "translate_record", "translation_stats"]
