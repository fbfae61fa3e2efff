"""Developer tools: set-up, a local Home Assistant, the benchmark and the browser test."""
