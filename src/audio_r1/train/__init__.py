"""Training stages: cold-start SFT (`sft.py`); MGRD, RL and DPO build on it."""
