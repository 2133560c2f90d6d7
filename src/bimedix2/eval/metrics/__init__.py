"""Pure metric functions (no model, no I/O): VQA, text generation, MCQ, judge scores."""
