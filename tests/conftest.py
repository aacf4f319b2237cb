"""Suite-wide settings: quiet MindSpore's C++ log and keep every test off the network."""

import os

os.environ.setdefault("GLOG_v", "4")          # MindSpore's C++ log (must precede `import mindspore`)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer/encoder load from local folders only
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
