"""Evaluation harness: task definitions (YAML), pure metric functions, generation runner,
LLM judges (BiMed-MBench, UPHILL) and paper-style reports. Research use only."""
