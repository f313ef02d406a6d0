"""Both training scripts' Hugging Face Hub flags: ``--push_to_hub``, ``--hub_model_id``, ``--hub_private``.

The push is checked at start-up (not offline, a token, the Hub answers to it: a run that cannot push stops in
seconds, not after hours of training) and done once, at the end, with the final model and its card
(:mod:`pipeline.model_card`); never a checkpoint, never mid-run.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

#: What a push leaves out of the output folder: the resumable states (optimizer included: gigabytes); the model,
#: its card, the metrics, the history and its plot (and a tracker's logs, which the Hub shows) go.
NOT_PUSHED = ["checkpoints/*", "checkpoints/**", "*.lock"]
_REPO_ID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_OFF = ("1", "ON", "YES", "TRUE")


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """The Hub flags and what the model card says that the run cannot know (the licence, the data set's name)."""
    hub = parser.add_argument_group("Hugging Face Hub and the model card")
    hub.add_argument(
        "--push_to_hub",
        action="store_true",
        help="at the end, upload the final model and its card (README.md) to --hub_model_id (needs `hf auth login` "
        "or HF_TOKEN; checked at start)",
    )
    hub.add_argument(
        "--hub_model_id",
        default=None,
        help="USER/NAME or NAME (under your account); default: the output folder's name",
    )
    hub.add_argument("--hub_private", action="store_true", help="create the Hub repository private")
    hub.add_argument("--dataset_name", default=None, help="the data set's name in the card (default: its folder's)")
    hub.add_argument(
        "--license", default="apache-2.0", help="the weights' licence in the card (match the base model's terms)"
    )


def check_hub_arguments(parser: argparse.ArgumentParser, args: Any) -> None:
    """Flag checks that need no network: a well-formed repository id, and no Hub flag without ``--push_to_hub``."""
    if args.hub_model_id is not None and not _REPO_ID.match(args.hub_model_id):
        parser.error(
            f"--hub_model_id must be USER/NAME or NAME (letters, digits, '-', '_', '.'), got {args.hub_model_id!r}"
        )
    if (args.hub_model_id or args.hub_private) and not args.push_to_hub:
        parser.error("--hub_model_id and --hub_private go with --push_to_hub")


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not at ``huggingface_hub``'s import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _OFF


def ready_to_push(args: Any, *, api: Any = None) -> str:
    """Check at start-up that the push at the end can happen; the repository id it will go to.

    Raises:
        SystemExit: offline, no token, or the Hub does not accept the token; the message says what to do.
    """
    if offline():
        raise SystemExit(
            "error: --push_to_hub needs the Hugging Face Hub, but HF_HUB_OFFLINE is set: unset it to push, or drop "
            "--push_to_hub (the model and its card are saved in --output_dir either way; `hf upload` can push them "
            "later)"
        )
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise SystemExit(
            "error: --push_to_hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write "
            "access), or drop --push_to_hub"
        )
    api = api or HfApi()
    try:
        user = api.whoami(token=token)["name"]
    except Exception as error:  # network down, endpoint wrong or token refused: all say the same to the user
        raise SystemExit(
            f"error: --push_to_hub: the Hugging Face Hub did not accept the token ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no answer'}); check the network and `hf auth whoami`, "
            "or drop --push_to_hub"
        ) from None
    name = args.hub_model_id or Path(args.output_dir).resolve().name
    if not _REPO_ID.match(name):  # a folder name is no repository name: say so now, not after training
        raise SystemExit(
            f"error: --push_to_hub: {name!r} (from --output_dir) is not a valid Hub repository name; give one with "
            "--hub_model_id NAME or USER/NAME (letters, digits, '-', '_', '.')"
        )
    return name if "/" in name else f"{user}/{name}"


def push_model(output_dir: str | Path, repo_id: str, *, private: bool, command: str, api: Any = None) -> str:
    """Create ``repo_id`` (if new) and upload the output folder's final model, card and run record; its URL."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(output_dir),
        ignore_patterns=NOT_PUSHED,
        commit_message="Upload the trained model and its card",
        commit_description=f"Trained with:\n\n    {command}",
    )
    return str(url)
