"""This server process's settings: photo threads at a lower priority, and a bounded number of malloc arenas."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading


def lower_thread_priority(nice: int = 19) -> None:
    """Lower the calling thread's CPU priority (Linux ``nice`` is per thread, and the OpenMP workers PyTorch starts
    from this thread inherit it): photo requests run this way, so that a live frame, at the normal priority, gets
    the cores first and photos take what is left. Does nothing where the OS does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for the rest of the process (``mallopt(M_ARENA_MAX)``); returns whether it could.

    glibc gives threads that allocate at the same time arenas of their own (up to 8 per core) and seldom returns
    their freed pages, so a server whose requests land on many different threads (Gradio's worker pool) grows by a
    few arenas' worth of fragments as new threads take requests. Two arenas keep the resident size flat under load
    (``tests/test_reliability.py`` measures it); call it before the server starts its threads. Elsewhere than
    glibc it does nothing.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX is -8 in glibc's malloc.h
    except (OSError, AttributeError):
        return False
