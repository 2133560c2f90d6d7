"""OpenAI-compatible HTTP serving: protocol (pydantic), dynamic batching, FastAPI app, web chat, vLLM launch."""
