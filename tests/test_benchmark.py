"""space/benchmark/bench.py end to end in quick mode on tiny random models: it runs, agrees, writes JSON and a PNG."""

from __future__ import annotations

import json
import os

import pytest
from helpers import ROOT, load_script

from pipeline import load_captioner

# The benchmark is a script beside its results, outside the library's imports: loaded from its file.
bench = load_script(ROOT / "space" / "benchmark" / "bench.py", "bench")


def test_bench_quick_tiny_end_to_end(tmp_path, capsys):
    torch_home = os.environ.get("TORCH_HOME")
    argv = ["--tiny", "--quick", "--size", "96x72", "--stream-seconds", "0.5", "--tokens", "4", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    assert os.environ.get("TORCH_HOME") == torch_home  # the temporary TORCH_HOME does not leak

    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(report["results"]) == {"naive", "full", "fast"}
    for result in report["results"].values():
        assert result["latency_s"]["total"]["n"] == 2
        assert result["latency_s"]["total"]["p50"] > 0 and result["batch_images_per_s"] > 0
        assert result["stream"]["frames"] >= 1 and result["memory_mib"]["peak_rss_estimate"] > 0
    assert report["results"]["naive"]["speedup_vs_naive"]["latency_p50"] == pytest.approx(1.0)
    assert report["agreement"]["full"]["all_agree"] is True
    assert report["agreement"]["full"]["same_captions"] == 2
    assert report["machine"]["cores"] >= 1 and "cpu" in report["machine"]
    assert any("save_pretrained" in note for note in report["models"])
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    printed = capsys.readouterr().out
    assert "full vs naive: agree" in printed and "| ours, fast |" in printed
    [row] = report["memory_by_size"]  # --quick: the 1-megapixel row only
    assert row["megapixels"] == 1 and row["size"][0] * row["size"][1] >= 0.99e6 and row["seconds"] > 0
    assert "| 1 MP (" in printed


def test_bench_bulk_mode_times_the_batch_job_against_a_loop(tmp_path, capsys):
    argv = ["--bulk", "3", "--tiny", "--profiles", "full", "--size", "96x72", "--bulk-batch-size", "2"]
    assert bench.main([*argv, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bulk.json").read_text())
    row = report["profiles"]["full"]
    assert row["same_captions"] == 3 and row["batch_exit_code"] == 0  # the full profile batches bit for bit
    assert row["loop_images_per_s"] > 0 and row["batch_images_per_s"] > 0
    assert report["pictures"] == 3 and "cpu" in report["machine"]
    assert "bulk, full: loop" in capsys.readouterr().out


def test_bench_rejects_bad_flags():
    with pytest.raises(SystemExit):
        bench.parse_args(["--images", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--profiles", "turbo"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--size", "640"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--memory-sizes", "1,80"])  # over the 40-megapixel limit
    with pytest.raises(SystemExit):
        bench.parse_args(["--bulk", "0"])
    args = bench.parse_args(["--quick"])
    assert (args.images, args.batch, args.stream_seconds, args.size) == (2, 2, 2.0, (640, 480))


@pytest.mark.slow
def test_bench_quality_mode_scores_each_profile(tmp_path, tiny_blip_dir, tiny_segmenter_dir, meteor):
    from train.shapes import write_split

    split = write_split(tmp_path / "shapes", "test", 3, seed=1)
    argv = ["--quality", str(split), "--captioner", tiny_blip_dir, "--segmenter", tiny_segmenter_dir]
    assert bench.main([*argv, "--out", str(tmp_path / "out")]) == 0
    quality = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert quality["images"] == 3 and set(quality["profiles"]) == {"full", "fast"}
    for metrics in quality["profiles"].values():
        assert 0.0 <= metrics["BLEU-4"] <= 1.0 and -1.0 <= metrics["segm_AP"] <= 1.0
    cost = quality["cost_vs_full"]["fast"]
    assert cost["segm_AP"] == pytest.approx(
        quality["profiles"]["full"]["segm_AP"] - quality["profiles"]["fast"]["segm_AP"]
    )


def test_bench_quality_limit_scores_like_train_evaluate(tmp_path, tiny_blip_dir, meteor):
    # --limit cuts the ground truth too: the figures equal train.evaluate's on the same images, not lower. The
    # trained shapes segmenter finds the shapes, so the AP is far from 0 and a cut that missed the ground truth
    # (the unmatched shapes of the images left out) would lower it.
    from pipeline import load_segmenter
    from pipeline.evaluation import evaluate_segmenter
    from train.shapes import write_split

    split = write_split(tmp_path / "shapes", "test", 6, seed=1)
    argv = ["--quality", str(split), "--captioner", tiny_blip_dir, "--segmenter", "shapes"]
    assert bench.main([*argv, "--limit", "3", "--profiles", "full", "--out", str(tmp_path / "out")]) == 0
    quality = json.loads((tmp_path / "out" / "quality.json").read_text())
    direct = evaluate_segmenter(load_segmenter("shapes", device="cpu"), split, max_images=3)
    assert quality["images"] == 3 and direct["segm_AP"] > 0.5
    assert quality["profiles"]["full"]["segm_AP"] == pytest.approx(direct["segm_AP"])
    assert quality["profiles"]["full"]["bbox_AP"] == pytest.approx(direct["bbox_AP"])


live_bench = load_script(ROOT / "space" / "benchmark" / "live.py", "live_bench")


def test_live_bench_rejects_bad_flags():
    bad = (["--paths", "neon"], ["--seconds", "0"], ["--detections", "0"], ["--tokens", "0"], ["--tokens", "61"])
    for argv in bad:
        with pytest.raises(SystemExit):
            live_bench.parse_args(argv)
    assert live_bench.parse_args([]).paths == ["native", "avx2"]
    assert live_bench.parse_args([]).tokens == 20  # as bench.py's captions


def test_live_bench_captions_have_the_length_asked_for(tiny_blip_dir, shapes_image):
    """The live view calls its captioner with no options; the benchmark's wrapper makes every caption as long as
    bench.py's, and a caller's own options still win."""
    captioner = load_captioner(tiny_blip_dir, device="cpu")
    fixed = live_bench.FixedLength(captioner, 7)
    forced = {"max_new_tokens": 7, "generate_kwargs": {"min_new_tokens": 7}}
    assert fixed(shapes_image) == captioner(shapes_image, **forced)
    assert fixed(shapes_image, sentence=False) == captioner(shapes_image, sentence=False, **forced)
    assert len(fixed(shapes_image, sentence=False)["caption"].split()) == 7  # one word a token in the tiny vocabulary
    assert fixed.name == captioner.name and fixed.accepts_prompt == captioner.accepts_prompt


@pytest.mark.slow
def test_live_bench_measures_both_cpu_paths_in_one_run(tmp_path, capsys):
    """Tiny models, short streams: each CPU path in its own process (the AVX2 one really runs AVX2 kernels), every
    figure of the table present and plausible, live.json written."""
    argv = ["--tiny", "--seconds", "1.5", "--no-browser", "--out", str(tmp_path)]
    assert live_bench.main(argv) == 0
    reports = json.loads((tmp_path / "live.json").read_text())
    assert [report["path"] for report in reports] == ["native", "avx2"]
    assert reports[1]["torch_cpu_capability"] == "AVX2"
    for report in reports:
        assert report["tab"]["updates_per_s"] > 1 and report["tab"]["key_frames"] >= 1
        assert len(report["two_sessions"]) == 2 and all(each["updates_per_s"] > 0 for each in report["two_sessions"])
        assert report["live_frame"]["calls_per_s"] > 0
        assert 0 < report["iou"]["live"] <= 1 and report["iou"]["every_frame"] > 0.8  # the shapes segmenter
    printed = capsys.readouterr().out
    assert "| native (" in printed and "| avx2 (AVX2)" in printed and "not measured" in printed
