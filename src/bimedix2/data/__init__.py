"""BiMed-V data pipeline: schema, streaming I/O, source builders, LLM rewriting, EN->AR
translation with scoring/refinement/human review, durable job state, and mixing."""
