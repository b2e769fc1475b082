"""The test session never downloads: Hugging Face and the named weight sources stay offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEGPRETRAIN_OFFLINE", "1")
