"""robustft: noise-robust LLM fine-tuning data curation (RobustFT, CLEAR)."""

__version__ = "0.1.0"
