"""What the tests build and share: tiny random-weight models saved as the loaders read them, test pictures, and the
app served on the test models. Never a hub download: every model here is made in the test session.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline import ModelSpec, registered_models
from pipeline.builders import build_blip, build_blip_vqa, build_git, build_maskrcnn, build_vit_gpt2
from pipeline.checkpoints import save_segmenter

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str) -> Any:
    """A script of the repository (not a package: ``space/benchmark/*.py``) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The Chromium the browser tests drive, with the benchmark's flags (one list for both).
BROWSER = load_script(ROOT / "space" / "benchmark" / "browser.py", "benchmark_browser")
EXAMPLES = ROOT / "space" / "examples"
TINY_WORDS = "a an the of in on picture photo red blue green circle square triangle and to left right".split()
TINY_CATEGORIES = ["__background__", "circle", "square", "triangle"]
#: The tiny answerer's words: the questions' and the answers'.
TINY_VQA_WORDS = [*TINY_WORDS, "what", "colour", "color", "is", "are", "yes", "no", "how", "many", "one", "two"]
#: A one-layer BLIP's widths: big enough to run every code path, small enough to build in a fraction of a second.
TINY_BLIP_LAYERS = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
#: The app tests' models: one captioner, and two segmenters sure of one class each (see build_confident_segmenter).
TEST_CAPTIONER = "test-tiny"
TEST_SEGMENTERS = {"test-circles": 1, "test-squares": 2}
#: The app tests' question answerer: a tiny random BLIP VQA (see save_tiny_blip_vqa).
TEST_ANSWERER = "test-vqa"


def save_tiny_blip(directory: str | Path, words: Sequence[str] = TINY_WORDS, *, seed: int = 0, **layers: Any) -> str:
    """A random-weight BLIP (32x32 input, one layer each side) with its processor, saved with ``save_pretrained``."""
    torch.manual_seed(seed)
    widths = {**TINY_BLIP_LAYERS, **layers}
    model, processor = build_blip(words, image_size=32, patch_size=8, vision=widths, text=widths)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def save_tiny_blip_vqa(directory: str | Path, words: Sequence[str] = TINY_VQA_WORDS, *, seed: int = 0) -> str:
    """A random-weight BLIP question answerer (``BlipForQuestionAnswering``, 32x32 input, one layer each part) with
    its processor, saved with ``save_pretrained`` in Salesforce/blip-vqa-base's layout.

    The answer decoder's bias against its end token ([SEP]) makes a random model say a few words (up to the token
    limit) instead of nothing, so that an answer is never empty.
    """
    torch.manual_seed(seed)
    model, processor = build_blip_vqa(
        words, image_size=32, patch_size=8, vision=TINY_BLIP_LAYERS, text=TINY_BLIP_LAYERS
    )
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[model.config.text_config.sep_token_id] = -100.0
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def save_tiny_vit_gpt2(directory: str | Path, words: Sequence[str] = TINY_WORDS, *, seed: int = 0) -> str:
    """A random-weight ViT-GPT2 (``VisionEncoderDecoderModel``: 32x32 ViT, one-layer GPT-2, a byte-level BPE of
    ``words``) with its image processor and tokenizer, saved with ``save_pretrained`` in nlpconnect's layout.

    GPT-2 ties its output layer to the token embeddings, so the end token's embedding is zeroed: its logit is then 0
    where the other tokens' are random, and a random model says a few words before it stops, instead of nothing.
    """
    torch.manual_seed(seed)
    encoder = {key: TINY_BLIP_LAYERS[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads")}
    decoder = {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_inner": 37, "n_positions": 64}
    model, processor = build_vit_gpt2(
        words, image_size=32, patch_size=8, encoder={**encoder, "intermediate_size": 37}, decoder=decoder
    )
    with torch.no_grad():
        model.decoder.get_input_embeddings().weight[model.config.eos_token_id] = 0.0
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def save_tiny_git(directory: str | Path, words: Sequence[str] = TINY_WORDS, *, seed: int = 0) -> str:
    """A random-weight GIT (32x32 CLIP image encoder, one text layer, a BERT-style vocabulary of ``words``) with its
    ``GitProcessor``, saved with ``save_pretrained`` in microsoft/git-base-coco's layout."""
    torch.manual_seed(seed)
    model, processor = build_git(
        words,
        image_size=32,
        patch_size=8,
        vision=TINY_BLIP_LAYERS,
        text={**TINY_BLIP_LAYERS, "max_position_embeddings": 64},
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)


def save_tiny_segmenter(
    directory: str | Path,
    *,
    seed: int = 0,
    categories: Sequence[str] = TINY_CATEGORIES,
    favourite: int | None = None,
    **settings: Any,
) -> str:
    """A random-weight Mask R-CNN (resnet18 FPN, 128 px) saved as a segmenter checkpoint.

    ``favourite``: a class index the classifier always picks (a large bias), so that results are deterministic and
    non-empty; ``settings`` override the ``MaskRCNN`` / ``build_maskrcnn`` settings saved with it.
    """
    torch.manual_seed(seed)
    settings = {"min_size": 128, "max_size": 160, "box_detections_per_img": 20, **settings}
    model = build_maskrcnn("maskrcnn_fpn", num_classes=len(categories), backbone="resnet18", **settings)
    if favourite is not None:
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[favourite] = 8.0
    save_segmenter(
        model,
        directory,
        categories=list(categories),
        architecture="maskrcnn_fpn",
        backbone="resnet18",
        model_kwargs=settings,
    )
    return str(directory)


def draw_shapes(width: int = 96, height: int = 72, seed: int = 0) -> Image.Image:
    """A small deterministic picture with a few coloured shapes on a noisy background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    draw.ellipse([8, 8, 40, 40], fill=(220, 30, 30))
    draw.rectangle([50, 20, 85, 60], fill=(30, 60, 220))
    draw.polygon([(20, 65), (35, 45), (50, 65)], fill=(40, 200, 60))
    return image


@contextlib.contextmanager
def registered_test_models(tiny_blip_dir: str, directory: Path) -> Iterator[dict[str, str]]:
    """The app tests' models in the catalog for the block; yields their directories by name (and ``"captioner"``,
    ``"answerer"``)."""
    directories = {"captioner": tiny_blip_dir, "answerer": save_tiny_blip_vqa(directory / TEST_ANSWERER)}
    specs = [
        ModelSpec(TEST_CAPTIONER, "captioner", tiny_blip_dir, "tiny random BLIP: for tests"),
        ModelSpec(TEST_ANSWERER, "answerer", directories["answerer"], "tiny random BLIP VQA: for tests"),
    ]
    for seed, (name, favourite) in enumerate(TEST_SEGMENTERS.items()):
        directories[name] = save_tiny_segmenter(
            directory / name, seed=seed, favourite=favourite, box_detections_per_img=4
        )
        what = TINY_CATEGORIES[favourite]
        specs.append(ModelSpec(name, "segmenter", directories[name], f"tiny random Mask R-CNN: finds {what}s"))
    with registered_models(specs):
        yield directories


def venv_seeing_this_environment(directory: Path) -> str:
    """A fresh virtual environment that also sees the packages of the interpreter running the tests; its python.

    ``python -m venv --system-site-packages`` does not do that from inside a virtual environment: the new one is
    based on the *base* interpreter and sees its packages, not the running environment's (torch, gradio, ...). A
    ``.pth`` file naming the running environment's site-packages works from a system Python and from a venv alike.
    """
    import site
    import subprocess
    import sys
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=300)
    python = directory / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(target) / "outer-environment.pth").write_text("".join(f"{path}\n" for path in ours if Path(path).is_dir()))
    return str(python)


#: What a source distribution of the project holds: a wheel is built from a copy of them, so that no earlier in-tree
#: build's leftovers (``build/``) can slip into it.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "requirements.txt", "app.py", "pipeline", "train")


def install_wheel_of_checkout(directory: Path) -> Path:
    """Build the project's wheel from a copy of the checkout and install it (``--no-deps``) in a fresh virtual
    environment under ``directory`` that sees this one's packages; the environment's ``bin`` folder (its console
    scripts and python)."""
    import shutil
    import subprocess
    import sys

    source = directory / "source"
    source.mkdir(parents=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "checkpoints"))
        else:
            shutil.copy2(ROOT / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(directory)]
    done = subprocess.run([*build, str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = directory.glob("vision_caption_segment-*.whl")
    python = Path(venv_seeing_this_environment(directory / "venv"))
    install = [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return python.parent


def serve(
    captioners: Sequence[str] = (TEST_CAPTIONER, "blip-base"),
    segmenters: Sequence[str] = (*TEST_SEGMENTERS, "maskrcnn-v2"),
    stuff: Sequence[str] = (),
    answerers: Sequence[str] = (),
    **options: Any,
):
    """Build and launch the app on the test models on 127.0.0.1; returns ``(demo, url)``. Call ``demo.close()``.
    ``stuff``: the stuff menu (besides "none"), its first the default; none by default.

    The page starts on the first answerer (``"none"`` when there is none). ``options`` go to
    :class:`pipeline.serve.service.Service` (``allow_hub``, ``live_sessions``, ``max_pixels``), to
    ``app.build_demo`` (``default_threshold``) or to ``launch`` (``mcp_server``).
    """
    import app
    from pipeline.serve.cache import ModelCache
    from pipeline.serve.menus import ModelMenus
    from pipeline.serve.service import Service

    allow_hub = options.pop("allow_hub", False)
    mcp_server = options.pop("mcp_server", False)
    service_options = {key: options.pop(key) for key in ("live_sessions", "max_pixels") if key in options}
    menus = ModelMenus(captioners, segmenters, stuff=stuff, answerers=answerers, allow_hub=allow_hub)
    service = Service(ModelCache(device="cpu"), menus, **service_options)
    models = {
        "captioner": captioners[0],
        "segmenter": segmenters[0],
        "stuff": stuff[0] if stuff else "none",
        "answerer": (*answerers, "none")[0],
    }
    demo = app.build_demo(service, models, **{"default_threshold": 0.3, **options})
    launch = {**app.launch_options(), "mcp_server": mcp_server}
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch)
    return demo, url


# -- the app in a real browser (test_browser.py, test_accessibility.py) ---------------------------------------------

CHROMIUM, CHROMIUM_ARGS = BROWSER.CHROMIUM, BROWSER.CHROMIUM_ARGS
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
RESULT_TIMEOUT_MS = 90_000


def open_page(browser, url, width=1280, height=800, init_script: str | None = None):
    context = browser.new_context(viewport={"width": width, "height": height}, permissions=["camera"])
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#image-in")
    return page


def upload(page, path: Path) -> None:
    page.set_input_files("#image-in input[type=file]", str(path))


def wait_for_caption(page, previous: str = "") -> str:
    page.wait_for_function(
        "(previous) => { const box = document.querySelector('#caption textarea');"
        " return box && box.value.length > 0 && box.value !== previous; }",
        arg=previous,
        timeout=RESULT_TIMEOUT_MS,
    )
    return page.input_value("#caption textarea")


def wait_for_picture(page, selector: str = "#annotated img", timeout: float = RESULT_TIMEOUT_MS) -> None:
    """Wait until a result picture is in the page, scrolled to and shown (below the fold on a phone, a lazy image
    has no size until it is scrolled near)."""
    page.wait_for_selector(selector, state="attached", timeout=timeout)
    page.eval_on_selector(selector, "element => element.scrollIntoView({block: 'center'})")
    page.wait_for_function(
        "(selector) => { const image = document.querySelector(selector);"
        " return image && image.complete && image.naturalWidth > 0; }",
        arg=selector,
        timeout=timeout,
    )


def page_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def install_hub_stand_in(cache_dir: str | Path, repo_id: str, model_dir: str | Path) -> Path:
    """Put a local ``save_pretrained`` directory in a Hugging Face cache under ``repo_id``, the way a download would
    leave it (``refs/main`` naming a snapshot), so that the real hub loading path finds it offline.

    Use with ``HF_HUB_CACHE=cache_dir`` (and ``HF_HUB_OFFLINE=1``).
    """
    import shutil

    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit, dirs_exist_ok=True)
    return repo


def install_torchvision_stand_in(torch_home: str | Path, builder: str, *, seed: int = 0) -> Path:
    """A random state dict of a full-size torchvision COCO model under torchvision's own checkpoint file name, so that
    its weights enum loads it as it would the released file (use with ``TORCH_HOME=torch_home``)."""
    import os

    from pipeline.hub import torchvision_checkpoint

    saved = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    try:
        checkpoint = torchvision_checkpoint(builder)
    finally:
        if saved is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = saved
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(build_maskrcnn(builder, num_classes=91).state_dict(), checkpoint)
    return checkpoint


def batch_outputs(directory: str | Path) -> dict[str, Any]:
    """A batch run's merged outputs without what differs from run to run (timings): ``captions`` (the lines of
    captions.jsonl), ``instances`` (instances.json), ``panoptic`` (panoptic.json) and ``errors`` (errors.jsonl)."""
    import json

    directory = Path(directory)

    def lines(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (directory / name).read_text().splitlines()]

    captions = [{key: value for key, value in line.items() if key != "timings_ms"} for line in lines("captions.jsonl")]
    return {
        "captions": captions,
        "instances": json.loads((directory / "instances.json").read_text()),
        "panoptic": json.loads((directory / "panoptic.json").read_text()),
        "errors": lines("errors.jsonl"),
    }


def check_model_card(directory: Path, kind: str, metrics: dict[str, float], *, steps: int, dataset: str) -> None:
    """The model card a training script left in ``directory``: metadata the Hub reads (parsed by huggingface_hub,
    offline), the run's measured figures in its model-index and its table, the exact command, the data, the base."""
    import json

    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from pipeline.model_card import HUB_TASKS, TAG, card_summary

    card = ModelCard.load(directory / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == HUB_TASKS[kind]["pipeline_tag"]
    assert data["library_name"] == HUB_TASKS[kind]["library_name"]
    assert data["license"] == "apache-2.0" and TAG in data["tags"]
    assert "base_model" not in data, "a local base model is no Hub id: it stays out of the metadata"
    _, results = model_index_to_eval_results(data["model-index"])
    measured = {name: value for name, value in metrics.items() if isinstance(value, (int, float))}
    assert {r.metric_name: r.metric_value for r in results} == {k: round(float(v), 4) for k, v in measured.items()}
    assert {r.dataset_name for r in results} == {dataset}
    saved = json.loads((directory / "metrics.json").read_text())
    for name, value in saved.items():
        assert f"| {name} | {round(float(value), 4)} |" in card.text
    module = {"captioner": "train.caption", "segmenter": "train.segment", "stuff": "train.stuff",
              "answerer": "train.answer"}[kind]  # fmt: skip
    assert f"python -m {module} " in card.text and f"--max_train_steps {steps}" in card.text
    assert "## Data" in card.text and "validation:" in card.text and "## Base model" in card.text
    summary = card_summary(directory)
    assert summary.startswith("Fine-tuned from ") and f"on {dataset} ({steps} steps)" in summary
    assert "/" not in summary, f"a summary the app shows must hold no path: {summary!r}"


#: A tiny stuff model's labels: ADE20K-like names, two of them things (which the stuff pipeline leaves out).
TINY_STUFF_LABELS = ["wall", "person", "sky", "grass", "car"]
#: SegFormer widths small enough to build and run in a fraction of a second.
TINY_SEGFORMER = {"hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 1, 1, 1], "decoder_hidden_size": 16,
                  "depths": [1, 1, 1, 1]}  # fmt: skip


def save_tiny_segformer(
    directory: str | Path, labels: Sequence[str] = TINY_STUFF_LABELS, *, seed: int = 0, favourite: int | None = None
) -> str:
    """A random-weight SegformerForSemanticSegmentation (64 px input) and its processor, saved with save_pretrained.

    ``favourite``: a class index the classifier always picks (a large bias), so that every pixel gets that class.
    """
    from pipeline.builders import build_segformer

    torch.manual_seed(seed)
    model, processor = build_segformer(labels, image_size=64, **TINY_SEGFORMER)
    if favourite is not None:
        with torch.no_grad():
            model.decode_head.classifier.bias[favourite] = 8.0
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
