"""Small utilities every layer uses: io.py (hashes, JSON, RLE masks), paths.py (repository and
default data / cache / runs locations), pickle_safe.py (the restricted unpickler for third-party
pickles), errors.py (one-line CLI and notebook errors, exit codes)."""
