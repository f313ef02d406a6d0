"""How the app's server is set up: its flags (each with an environment variable), the
:class:`~pipeline.serve.service.Service` built from them, and the operator's start-up notes. Gradio-free;
``app.py`` lays the page out over what this returns.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Sequence

from ..catalog import NO_STUFF, availability, best_available, list_models, load_captioner, load_segmenter, load_stuff
from ..env import env_flag, env_int
from ..speed import PROFILES, default_profile
from .cache import ModelCache
from .menus import NO_ANSWERER, ModelMenus, operator_model
from .service import Service
from .zerogpu import default_device, on_zerogpu

#: Every flag: (flag, its environment variable, kind, default, help). ``str`` defaults may be None; ``flag`` ones
#: are --x / --no-x. pipeline/serve/README.md's flags table says the same.
FLAGS = [
    ("--host", "GRADIO_SERVER_NAME", str, "127.0.0.1", "address to listen on; 0.0.0.0 for every interface"),
    ("--port", "GRADIO_SERVER_PORT", int, 7860, "port"),
    ("--captioner", "APP_CAPTIONER", str, None, "default captioner: a catalog name, directory or hub id (default "
     "blip-base when it is on this machine, else shapes); a directory is offered under its folder name"),
    ("--segmenter", "APP_SEGMENTER", str, None, "default segmenter: a catalog name or checkpoint directory "
     "(default maskrcnn-v2 when it is on this machine, else shapes)"),
    ("--stuff", "APP_STUFF", str, None, "default stuff model (sky, grass, water, ... around the objects): a catalog "
     "name, directory or hub id, or none (default segformer-b0-ade when it is on this machine, else shapes)"),
    ("--device", "APP_DEVICE", str, default_device(), "cpu, cuda or auto (cuda on ZeroGPU)"),
    ("--profile", "APP_PROFILE", str, None, f"speed profile of the photo models, one of {sorted(PROFILES)} "
     "(default fast on CPU, full on a GPU or ZeroGPU)"),
    ("--offline", "APP_OFFLINE", "flag", False, "never try a download: only models already on this machine are "
     "offered (sets HF_HUB_OFFLINE=1)"),
    ("--allow-hub-models", "APP_ALLOW_HUB_MODELS", "flag", False, "let clients name any Hugging Face hub captioner, "
     "which the server then downloads and runs (unsafe on a public Space; directories are never accepted)"),
    ("--max-models", "APP_MAX_MODELS", int, 4, "models kept loaded at once; least recently used are evicted beyond "
     "it or when memory is short"),
    ("--live-sessions", "APP_LIVE_SESSIONS", int, 2, "webcam streams served at the same time"),
    ("--mcp", "APP_MCP", "flag", True, "serve the script endpoints as MCP tools for assistants at /gradio_api/mcp/ "
     "(--no-mcp or APP_MCP=0 turns it off)"),
]  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each defaults to an environment variable so that a Space or a container can set them."""
    described = (
        "Serve the caption-and-segment app (Gradio). Every flag also reads the environment variable in its help."
    )
    parser = argparse.ArgumentParser(prog="python app.py", description=described)
    for flag, variable, kind, default, text in FLAGS:
        if kind == "flag":
            value, options = env_flag(variable, default), {"action": argparse.BooleanOptionalAction}
        else:
            value = env_int(variable, default) if kind is int else (os.environ.get(variable) or default)
            options = {"type": kind, "choices": sorted(PROFILES) if flag == "--profile" else None}
        parser.add_argument(flag, default=value, help=f"{text} (env {variable}; default {default})", **options)
    parser.add_argument("--no-preload", action="store_true", help="load the default models on first use")
    args = parser.parse_args(argv)
    args.profile = args.profile or default_profile(args.device)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_models < 1 or args.live_sessions < 1:
        parser.error("--max-models and --live-sessions must be positive")
    return args


def build_service(
    args: argparse.Namespace, *, runner: Callable | None = None, answer_runner: Callable | None = None
) -> tuple[Service, dict[str, str]]:
    """The Service for these settings, and the models to start on (``{kind: name}``; ``"asked_<kind>"`` holds what
    was asked for when it cannot load here). The menus are the catalog plus the operator's own models (a directory
    gets a name of its own, never shown as a path). ``runner`` and ``answer_runner``: the
    :class:`~pipeline.serve.models.ModelRunner`'s (ZeroGPU's ``spaces.GPU`` functions)."""
    chosen: dict[str, str | None] = {}
    menus = {}
    answerers = [spec.name for spec in list_models("answerer")]
    # Questions the objects answer need no answerer: with none that loads here, the page starts on "none".
    usable = [name for name in answerers if availability(name, "answerer")[0]]
    chosen["answerer"] = best_available("answerer", usable) or NO_ANSWERER
    for kind, asked in (("captioner", args.captioner), ("segmenter", args.segmenter), ("stuff", args.stuff)):
        names = [spec.name for spec in list_models(kind)]
        named = operator_model(kind, asked) if asked else None
        menus[kind] = [named, *names] if named and named not in names else names
        chosen[kind] = best_available(kind, menus[kind], named)
        if kind == "stuff" and not availability(chosen[kind] or NO_STUFF, kind)[0]:
            chosen[kind] = NO_STUFF  # no stuff model loads here: the views hold the objects only
        if named and chosen[kind] != named:
            chosen[f"asked_{kind}"] = named
    cache = ModelCache(
        device=args.device,
        max_models=None if on_zerogpu() else args.max_models,
        loaders={
            "captioner": functools.partial(load_captioner, profile=args.profile),
            "segmenter": functools.partial(load_segmenter, profile=args.profile),
            "stuff": functools.partial(load_stuff, profile=args.profile),
        },
    )
    service = Service(
        cache,
        ModelMenus(
            menus["captioner"],
            menus["segmenter"],
            stuff=menus["stuff"],
            answerers=answerers,
            allow_hub=args.allow_hub_models,
        ),
        live_sessions=args.live_sessions,
        runner=runner,
        answer_runner=answer_runner,
    )
    return service, chosen


def setup_notes(chosen: dict[str, str]) -> list[str]:
    """What the page tells the operator about the models it starts on: a fallback from what was asked, or none."""
    notes = [
        f"the {kind} `{chosen[f'asked_{kind}']}` that was asked for cannot be loaded here "
        f"({availability(chosen[f'asked_{kind}'], kind)[1]}); `{chosen[kind]}` is used instead."
        for kind in ("captioner", "segmenter", "stuff")
        if f"asked_{kind}" in chosen
    ]
    return notes + [
        f"no {kind} that loads here was found, so analysis fails until one is installed (see the note under its "
        "menu, and the README)."
        for kind in ("captioner", "segmenter")
        if not chosen.get(kind) or not availability(chosen[kind], kind)[0]
    ]
