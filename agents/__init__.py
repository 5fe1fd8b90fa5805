"""One module per LLM role; each renders its prompt, calls the endpoint, parses the reply."""
