"""Hub ids without a network: use the local cache, or fail in seconds with what to do instead.

Without this, a hub id on a machine with no network (a GPU node behind a firewall) prints half
a minute of huggingface_hub retry lines and then a message that names no way out.
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from sers.errors import SersError

PROBE_SECONDS = float(os.environ.get("SERS_HUB_TIMEOUT", "3"))  # how long to wait for the hub to answer


def offline_hint(name: str, reason: str) -> str:
    return (f"--model {name}: {reason}, and the model is not in the local Hugging Face cache; give a local "
            f"model folder (config.json + weights) or a CTranslate2 (faster-whisper) folder, or download it "
            f"where there is a network (`hf download {name}`) and copy the cache here with HF_HUB_OFFLINE=1")


def offline_reason() -> str | None:
    """Why hub ids must come from the local cache (HF_HUB_OFFLINE, or no answer from the hub
    within SERS_HUB_TIMEOUT seconds), or None when the hub can be asked."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    if not _reachable(constants.ENDPOINT, PROBE_SECONDS):
        return f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached"
    return None


def _reachable(endpoint: str, timeout: float) -> bool:
    """A TCP connection to the endpoint within ``timeout`` (name lookup included: it has no
    timeout of its own, so it runs in a thread that is abandoned when too slow)."""
    url = urlparse(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    answer = []

    def connect():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer)


def _truthy(value) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")
