"""Allocator settings for the generator; import this module before polars.

polars allocates through jemalloc, which hands freed pages back to the operating system over
about ten seconds. The generator frees and re-allocates a chunk's worth of memory every few
seconds, so at 10M events it faulted the same gigabyte back in about a million times (3 s of
system time, a fifth of its CPU). Keeping freed pages for 30 s cuts those faults by about two
thirds, at about 10% more peak memory. jemalloc reads the setting when polars is first loaded,
so it applies when the generator is imported before polars (`python -m scripts.generate`, the
pipeline's generate stage) and is a no-op otherwise; a value already in the environment wins.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:30000,muzzy_decay_ms:30000")
