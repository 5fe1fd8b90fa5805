"""robustft: noise-robust LLM fine-tuning data curation (RobustFT, CLEAR).

``robustft.curate(data, output=...)`` / ``await robustft.acurate(...)``: the Python API
(:mod:`robustft.api`), imported on first use so that ``import robustft.config`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["CurateResult", "acurate", "curate"]


def __getattr__(name: str):
    if name in __all__:
        from robustft import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustft' has no attribute {name!r}")
