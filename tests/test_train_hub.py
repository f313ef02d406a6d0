"""The training scripts' Hub flags up to the network boundary: a run that cannot push stops at start-up with what to
do (offline, no token, a Hub that does not answer), and the push at the end sends the final model and its card, not
the resumable states. The Hub itself is never called: where a call would leave this machine, a stand-in that checks
each call against ``HfApi``'s real signature records it, or the endpoint is a closed port of 127.0.0.1."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from pipeline.model_card import CardFacts, card_summary, render_model_card, summary_of, write_model_card
from train import caption, hub, segment


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: each call must fit the real method; it is recorded."""

    def __init__(self, user: str = "someone"):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.user = user

    def _record(self, name: str, *args, **kwargs):
        from huggingface_hub import HfApi

        inspect.signature(getattr(HfApi, name)).bind(self, *args, **kwargs)
        self.calls.append((name, args, kwargs))

    def whoami(self, *args, **kwargs):
        self._record("whoami", *args, **kwargs)
        return {"name": self.user}

    def create_repo(self, *args, **kwargs):
        self._record("create_repo", *args, **kwargs)
        return f"https://huggingface.co/{args[0]}"

    def upload_folder(self, **kwargs):
        self._record("upload_folder", **kwargs)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_script(
    module: str, argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip
    return done, time.monotonic() - started


def test_push_offline_stops_before_anything_is_done(shapes_data, tmp_path, capsys):
    output = tmp_path / "run"
    argv = ["--train_dir", str(shapes_data / "train"), "--output_dir", str(output), "--push_to_hub"]
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        segment.main([*argv, "--model", "maskrcnn_fpn", "--init", "scratch"])
    assert "HF_HUB_OFFLINE is set" in str(stopped.value) and "drop --push_to_hub" in str(stopped.value)
    assert time.monotonic() - started < 5 and not output.exists()


@pytest.mark.parametrize(
    "endpoint, token, says",
    [
        (None, None, "run `hf auth login` or set HF_TOKEN"),
        ("closed", "hf_notARealTokenAtAll", "the Hugging Face Hub did not accept the token"),
    ],
)
def test_push_without_a_token_or_a_hub_stops_at_start_up(shapes_data, tmp_path, endpoint, token, says):
    """Online (HF_HUB_OFFLINE unset), with no token saved or an endpoint that refuses connections."""
    env = {"HF_HOME": str(tmp_path / "hf-home")}
    if token:
        env["HF_TOKEN"] = token
    if endpoint:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    output = tmp_path / "run"
    argv = ["--train_dir", str(shapes_data / "train"), "--output_dir", str(output), "--push_to_hub", "--cpu"]
    done, seconds = run_script("train.segment", [*argv, "--model", "maskrcnn_fpn", "--init", "scratch"], env, tmp_path)
    assert done.returncode != 0 and says in done.stderr, done.stderr[-2000:]
    assert "drop --push_to_hub" in done.stderr
    assert token is None or token not in done.stderr, "the token is never printed"
    assert not output.exists(), "nothing is trained or written before the Hub is checked"
    print(f"stopped after {seconds:.1f} s (imports included)")
    assert seconds < 60


def test_hub_flags_are_checked_before_any_network(shapes_data, tmp_path, capsys):
    base = ["--model_name_or_path", "unused", "--train_dir", str(shapes_data / "train"), "--output_dir", str(tmp_path)]
    for extra, says in [
        (["--hub_model_id", "me/model"], "go with --push_to_hub"),
        (["--push_to_hub", "--hub_model_id", "me/a/b"], "--hub_model_id must be USER/NAME or NAME"),
    ]:
        with pytest.raises(SystemExit):
            caption.parse_args([*base, *extra])
        assert says in capsys.readouterr().err
    for script in (caption, segment):
        with pytest.raises(SystemExit):
            script.parse_args(["--help"])
        shown = capsys.readouterr().out
        assert all(flag in shown for flag in ("--push_to_hub", "--hub_model_id", "--hub_private", "--license"))
    args = segment.parse_args(["--train_dir", str(shapes_data / "train"), "--output_dir", "o", "--push_to_hub"])
    assert args.push_to_hub and args.command.startswith("python -m train.segment --train_dir ")


def test_ready_to_push_names_the_repository_under_the_tokens_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_notARealTokenAtAll")
    api = RecordingApi("someone")
    args = caption.parse_args(["--model_name_or_path", "m", "--captions_file", "c", "--images_dir", "i",
                               "--output_dir", str(tmp_path / "blip-shapes"), "--push_to_hub"])  # fmt: skip
    assert hub.ready_to_push(args, api=api) == "someone/blip-shapes"
    args.hub_model_id = "team/captioner"
    assert hub.ready_to_push(args, api=api) == "team/captioner"
    assert [name for name, _, _ in api.calls] == ["whoami", "whoami"]
    args.hub_model_id, args.output_dir = None, str(tmp_path / "my model")  # a folder name that is no repository
    with pytest.raises(SystemExit, match="'my model' \\(from --output_dir\\) is not a valid Hub repository name"):
        hub.ready_to_push(args, api=api)


def test_push_sends_the_model_and_card_but_not_the_resumable_states(tmp_path):
    from huggingface_hub.utils import filter_repo_objects

    folder = tmp_path / "run"
    (folder / "checkpoints" / "step_4").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "metrics.json", "checkpoints/step_4/optimizer.bin"):
        (folder / name).write_text("x")
    facts = CardFacts(kind="captioner", base_model="Salesforce/blip-image-captioning-base", dataset="shapes",
                      metrics={"BLEU-4": 0.25}, evaluated_on="4 validation images", command="python -m train.caption",
                      steps=4)  # fmt: skip
    write_model_card(folder, facts)
    api = RecordingApi()
    url = hub.push_model(folder, "someone/blip-shapes", private=True, command="python -m train.caption", api=api)
    assert url == "https://huggingface.co/someone/blip-shapes"
    (create, args, created), (upload, _, uploaded) = api.calls
    assert (create, args, created["private"], created["exist_ok"]) == (
        "create_repo",
        ("someone/blip-shapes",),
        True,
        True,
    )
    assert upload == "upload_folder" and uploaded["folder_path"] == str(folder)
    files = [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()]
    sent = set(filter_repo_objects(files, ignore_patterns=uploaded["ignore_patterns"]))  # huggingface_hub's own filter
    assert sent == {"README.md", "model.safetensors", "config.json", "metrics.json"}


def test_card_metadata_names_a_hub_base_model_and_never_a_path(tmp_path):
    from huggingface_hub import ModelCard

    hub_base = CardFacts(kind="captioner", base_model="Salesforce/blip-image-captioning-base", dataset="flickr8k",
                         metrics={}, evaluated_on="no images", command="python -m train.caption", steps=9)  # fmt: skip
    data = ModelCard(render_model_card(hub_base)).data.to_dict()
    assert data["base_model"] == "Salesforce/blip-image-captioning-base" and "model-index" not in data
    assert "Not evaluated" in render_model_card(hub_base)
    local = tmp_path / "models" / "blip"
    local.mkdir(parents=True)
    facts = CardFacts(kind="captioner", base_model=str(local), dataset="flickr8k", metrics={"CIDEr": 0.5},
                      evaluated_on="40 validation images", command="python -m train.caption", steps=9)  # fmt: skip
    summary = summary_of(render_model_card(facts))
    assert summary == "Fine-tuned from a local model on flickr8k (9 steps); CIDEr 0.500 on 40 validation images"
    assert card_summary(tmp_path) is None  # no card there
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# someone else's card\n\nSome words.\n")
    assert card_summary(tmp_path) is None  # not this project's card
