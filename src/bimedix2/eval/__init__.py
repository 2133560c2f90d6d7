"""Evaluation harness: task definitions (YAML), evaluation kinds (`kinds/`, a registry), pure metric
functions, the generation runner, LLM judges and paper-style reports. Research use only."""
