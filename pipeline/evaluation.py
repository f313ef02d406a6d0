"""Scoring captioners and segmenters: the one implementation behind ``train/``, the benchmark and the batch job.

- Captions (:func:`caption_metrics`), exactly as COCO's caption evaluation computes them: every text tokenised by
  the Stanford PTB tokenizer that pycocoevalcap ships, its punctuation removed (:func:`ptb_tokenize`), then every
  candidate scored against all references of its image: BLEU-1..4, ROUGE-L and CIDEr (CIDEr-D) from pycocoevalcap's
  pure-Python scorers and METEOR from its ``meteor-1.5.jar`` (:func:`start_meteor`; its JVM takes seconds to load
  METEOR's paraphrase table, once per process); and the gender misclassification rates of :func:`gender_rates`.
  The tokenizer and METEOR run on Java (:func:`require_java`).
- Instances: COCOeval (pycocotools) box and mask AP, AP50, AP75 from detections in the COCO results format
  (:func:`coco_detections`, :func:`coco_instance_metrics`).
- Panoptic segmentation: PQ, SQ and RQ by the COCO panoptic definition (``panopticapi``'s ``pq_compute``): segments
  matched at IoU > 0.5 within a category, VOID (id 0) pixels of the ground truth left out of the IoU, predictions
  mostly on VOID or on a crowd region of their category not counted as false positives, crowd segments never false
  negatives, and the averages taken over the categories that occur (:func:`panoptic_quality`).
- A pipeline on a data set folder: :func:`evaluate_captioner` (a caption file and an images folder, see
  :mod:`pipeline.caption_files`) and :func:`evaluate_segmenter` (``images/`` and a COCO ``instances.json``); with
  ``max_images`` the ground truth is cut to the same images, so that AP scores only what was predicted.

>>> scores = caption_metrics({"1.png": ["a red circle"], "2.png": ["a blue square"]}, {"1.png": "a red circle",
...                                                                                  "2.png": "a blue square"},
...                          meteor=False)
>>> round(scores["BLEU-1"], 3), round(scores["ROUGE-L"], 3), scores["gender_images"]
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .caption_files import find_caption_data, read_captions

#: The caption scores :func:`caption_metrics` returns (METEOR unless ``meteor=False``).
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
#: The gender figures :func:`gender_rates` returns (the two rates only when ``gender_images`` is above 0).
GENDER_METRICS = ("gender_images", "gender_error_rate", "gender_none_rate")
COCO_METRICS = ("AP", "AP50", "AP75")
#: Words that say a person is male or female: every word of the man and woman lists of Burns et al., "Women also
#: Snowboard" (ECCV 2018: their code's ``man_word_list_synonyms`` and ``woman_word_list_synonyms``, which add dude,
#: policeman, fireman, actor, actress, nun, ... to boy, brother, dad, husband, man, groom, male, guy, men and their
#: female counterparts), less the one proper name in theirs, with the plurals, pronouns and kinship words they lack.
#: A possessive ("man's") counts as its word.
MALE_WORDS = frozenset(
    "man men mans boy boys guy guys male males gentleman gentlemen he him his himself husband husbands groom grooms "
    "father fathers dad dads son sons brother brothers boyfriend boyfriends grandfather grandpa uncle king dude "
    "dudes policeman policemen fireman firemen actor actors".split()
)
FEMALE_WORDS = frozenset(
    "woman women girl girls lady ladies female females she her hers herself wife wives bride brides mother mothers "
    "mom moms daughter daughters sister sisters girlfriend girlfriends grandmother grandma aunt queen actress "
    "actresses nun nuns".split()
)
PANOPTIC_METRICS = ("PQ", "SQ", "RQ")
#: panopticapi's constants: the unlabeled segment id, and the factor that packs a (ground truth, prediction) pair.
PANOPTIC_VOID = 0
_PANOPTIC_OFFSET = 256**3
_WORD_SEPARATORS = re.compile(r"[^0-9a-z']+")
JAVA_MISSING = (
    "caption scores need a Java runtime, as COCO's caption evaluation does (pycocoevalcap tokenises captions with "
    "the Stanford PTB tokenizer and scores METEOR with meteor-1.5.jar), and no `java` is on PATH: install one "
    "(Debian/Ubuntu: apt-get install default-jre-headless; Java 8 or newer)"
)


class JavaUnavailableError(RuntimeError):
    """A caption score cannot be computed here: no Java; the message says what to install."""


class MeteorUnavailableError(JavaUnavailableError):
    """METEOR cannot be scored here: no Java, or its Java scorer stopped; the message says what to do."""


def require_java() -> None:
    """Raise :class:`JavaUnavailableError` (saying what to install) unless a ``java`` is on PATH.

    Every caption score needs it (the PTB tokenizer; METEOR too): call it before a long run, not after.
    """
    if shutil.which("java") is None:
        raise JavaUnavailableError(JAVA_MISSING)


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """COCO's caption tokenisation of each text: the Stanford PTB tokenizer of pycocoevalcap
    (``stanford-corenlp-3.4.1.jar``, ``-preserveLines -lowerCase``), then its punctuation tokens removed: what
    ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer`` gives, run on a file of our own temporary folder rather
    than one written into the installed package. "t-shirt" stays one token, "man's" is "man 's", "2.5" and "café"
    stay as they are.

    >>> ptb_tokenize(["A man's T-shirt, 2.5 m long.", "Un café!"])
    ["a man 's t-shirt 2.5 m long", 'un café']

    Raises:
        JavaUnavailableError: no Java (see :func:`require_java`).
        RuntimeError: the tokenizer failed (its message is given).
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    require_java()
    if not texts:
        return []
    jar = Path(ptbtokenizer.__file__).parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory(prefix="ptb-") as folder:
        source = Path(folder) / "captions.txt"
        # One line per text: every kind of line break (\r, \u2028, ...) becomes a space, as pycocoevalcap does "\n".
        source.write_bytes("\n".join(" ".join(text.split()) for text in texts).encode())
        done = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
             str(source)],
            capture_output=True, timeout=600, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the PTB tokenizer failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    lines = done.stdout.decode().split("\n")
    lines += [""] * (len(texts) - len(lines))
    punctuation = set(ptbtokenizer.PUNCTUATIONS)
    return [
        " ".join(word for word in line.rstrip().split(" ") if word not in punctuation) for line in lines[: len(texts)]
    ]


def normalize_caption(text: str) -> str:
    """Lower case, punctuation removed, single spaces: how :func:`caption_gender` reads a caption's words.

    >>> normalize_caption("A red circle, left of a Square.")
    'a red circle left of a square'
    """
    return " ".join(_WORD_SEPARATORS.split(text.lower())).strip()


def caption_metrics(
    references: Mapping[str, Sequence[str]], candidates: Mapping[str, str], *, meteor: bool = True
) -> dict[str, float]:
    """Corpus BLEU-1..4, METEOR, ROUGE-L, CIDEr and the gender rates of one candidate caption per image.

    Args:
        references (Mapping[str, Sequence[str]]): image key -> its reference captions (at least one each).
        candidates (Mapping[str, str]): image key -> the generated caption; keys must match ``references``.
        meteor (bool, default True): score METEOR (needs Java, see :func:`start_meteor`).

    Returns:
        dict with ``"BLEU-1"`` .. ``"BLEU-4"``, ``"METEOR"`` (with ``meteor``), ``"ROUGE-L"`` and ``"CIDEr"``
        (floats; BLEU, METEOR and ROUGE-L in [0, 1], CIDEr on pycocoevalcap's 0-10 scale), the same numbers as
        pycocoevalcap's own pipeline (PTB tokenizer, then its scorers) on the same captions, and the
        :data:`GENDER_METRICS` of :func:`gender_rates`.

    Raises:
        ValueError: keys that differ, no images, an image without references.
        JavaUnavailableError: no Java (the tokenizer and METEOR run on it).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(candidates):
        missing = sorted(set(references) ^ set(candidates))[:5]
        raise ValueError(f"references and candidates must cover the same images, differing on {missing}")
    if not candidates:
        raise ValueError("caption_metrics needs at least one image, got none")
    keys = sorted(candidates)
    if any(not references[key] for key in keys):
        raise ValueError("every image needs at least one reference caption")
    texts = [text for key in keys for text in references[key]] + [candidates[key] for key in keys]
    tokens = iter(ptb_tokenize(texts))  # one JVM for every text; line by line, as pycocoevalcap's two calls give
    gts = {key: [next(tokens) for _ in references[key]] for key in keys}
    res = {key: [next(tokens) or "<empty>"] for key in keys}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its ratio line
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    scores = {f"BLEU-{n}": float(score) for n, score in enumerate(bleu, start=1)}
    if meteor:
        scores["METEOR"] = _meteor_score(gts, res)
    scores.update({"ROUGE-L": float(rouge), "CIDEr": float(cider)})
    return {**scores, **gender_rates(references, candidates)}


# -- METEOR ------------------------------------------------------------------------------------------------------

_meteor_lock = threading.Lock()
_meteor: Any = None  # pycocoevalcap's Meteor: one Java process for the whole Python process


def start_meteor() -> None:
    """Start METEOR's Java scorer now, if it is not running, and return at once.

    Its JVM takes seconds to load METEOR's paraphrase table, while this process goes on: call it before
    generating captions and the wait is spent by the time they are scored. One scorer serves the process (and its
    threads) until it exits. Without Java it fails here, before any work is done.

    Raises:
        MeteorUnavailableError: no ``java`` on PATH (the message says how to install one).
    """
    _meteor_scorer()


def _meteor_scorer() -> Any:
    global _meteor
    with _meteor_lock:
        if _meteor is None or _meteor.meteor_p.poll() is not None:
            if shutil.which("java") is None:
                raise MeteorUnavailableError(JAVA_MISSING)
            from pycocoevalcap.meteor.meteor import Meteor

            _meteor = Meteor()
        return _meteor


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    global _meteor
    scorer = _meteor_scorer()
    try:
        score, _ = scorer.compute_score(gts, res)
    except (OSError, ValueError) as error:  # a broken pipe, or an empty line where a score should be
        if scorer.lock.locked():  # compute_score holds it without try/finally; Meteor.__del__ would wait forever
            scorer.lock.release()
        scorer.meteor_p.kill()
        with _meteor_lock:
            _meteor = None
        raise MeteorUnavailableError(
            f"METEOR's Java scorer stopped ({type(error).__name__}: {error}); check `java -version` (Java 8 or "
            "newer) and that 2 GB of memory are free for it (pycocoevalcap runs it with -Xmx2G)"
        ) from None
    return float(score)


# -- gender ------------------------------------------------------------------------------------------------------


def caption_gender(text: str) -> str | None:
    """``"male"`` or ``"female"`` when a caption names people of one gender only (:data:`MALE_WORDS`,
    :data:`FEMALE_WORDS`), None when it names neither or both.

    >>> caption_gender("A man's bike"), caption_gender("two women talking"), caption_gender("a man and a woman")
    ('male', 'female', None)
    >>> caption_gender("a manhole cover") is None
    True
    """
    words = {word.removesuffix("'s").strip("'") for word in normalize_caption(text).split()}
    male, female = bool(words & MALE_WORDS), bool(words & FEMALE_WORDS)
    if male != female:
        return "male" if male else "female"
    return None


def gender_rates(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str]) -> dict[str, float]:
    """The gender misclassification rate of captions, and how often they name no gender.

    The images counted are those whose references agree on a gender: at least one reference names it (a word of
    :data:`MALE_WORDS` or :data:`FEMALE_WORDS`) and none names the other. Among them, a caption is wrong when it
    names the other gender only, and names none when it has no gendered word or words of both (undecided, as in
    Burns et al. 2018, whose error rate is the first figure).

    Args:
        references (Mapping[str, Sequence[str]]): image key -> its reference captions.
        candidates (Mapping[str, str]): image key -> the generated caption (keys as ``references``).

    Returns:
        dict with ``"gender_images"`` (how many images were counted, a float like every metric) and, when it is
        above 0, ``"gender_error_rate"`` and ``"gender_none_rate"`` (shares of those images, in [0, 1]).

    >>> gender_rates({"1": ["a man surfing", "a surfer"], "2": ["a girl and her dog"], "3": ["a dog"]},
    ...              {"1": "a woman surfing", "2": "a dog on grass", "3": "a man with a dog"})
    {'gender_images': 2.0, 'gender_error_rate': 0.5, 'gender_none_rate': 0.5}
    """
    wrong = unstated = counted = 0
    for key, texts in references.items():
        truth = caption_gender(" ".join(texts))
        if truth is None:
            continue
        counted += 1
        said = caption_gender(candidates[key])
        wrong += said is not None and said != truth
        unstated += said is None
    if not counted:
        return {"gender_images": 0.0}
    return {
        "gender_images": float(counted),
        "gender_error_rate": wrong / counted,
        "gender_none_rate": unstated / counted,
    }


def coco_detections(
    image_id: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    category_ids: Sequence[int],
    masks: np.ndarray | None,
) -> list[dict[str, Any]]:
    """One image's detections in the COCO results format (boxes ``[x, y, w, h]``, masks as RLE with str counts).

    Args:
        image_id (int): the COCO image id.
        boxes (np.ndarray[N, 4] float): ``[x0, y0, x1, y1]`` pixels.
        scores (np.ndarray[N] float): confidences.
        category_ids (Sequence[int]): COCO category id of each detection.
        masks (np.ndarray[N, H, W] bool | None): binary masks; None for box-only results.
    """
    results = []
    for index, (box, score, category_id) in enumerate(zip(boxes, scores, category_ids)):
        x0, y0, x1, y1 = (float(value) for value in box)
        result = {
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[index].astype(np.uint8)))
            result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        results.append(result)
    return results


def coco_instance_metrics(
    coco_gt: Any, detections: Sequence[dict[str, Any]], *, segm: bool = True, image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """COCOeval box (and mask) AP, AP50, AP75 of detections against a ground truth.

    Args:
        coco_gt (pycocotools.coco.COCO): the ground truth.
        detections (Sequence[dict]): COCO results (see :func:`coco_detections`); may be empty (all metrics 0).
        segm (bool, default True): also evaluate masks (every detection then needs ``"segmentation"``).
        image_ids (Sequence[int] | None, default None): score only these images (those that were predicted); None
            scores every image of the ground truth.

    Returns:
        dict with ``"bbox_AP"``, ``"bbox_AP50"``, ``"bbox_AP75"`` and, with ``segm``, the ``"segm_..."`` ones;
        in [0, 1], -1 where COCOeval has no ground truth to score against.
    """
    from pycocotools.cocoeval import COCOeval

    iou_types = ("bbox", "segm") if segm else ("bbox",)
    if not detections:
        return {f"{iou}_{name}": 0.0 for iou in iou_types for name in COCO_METRICS}
    metrics = {}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print progress lines
        coco_dt = coco_gt.loadRes(list(detections))
        for iou_type in iou_types:
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = sorted(coco_gt.getImgIds() if image_ids is None else image_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            for index, name in enumerate(COCO_METRICS):
                metrics[f"{iou_type}_{name}"] = float(evaluator.stats[index])
    return metrics


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """The segment ids of a COCO panoptic PNG: ``R + 256 * G + 256**2 * B`` of each pixel.

    Args:
        rgb (np.ndarray[H, W, 3] uint8): the PNG's pixels.

    Returns:
        np.ndarray[H, W] int64.

    >>> rgb_to_id(np.array([[[1, 0, 0], [0, 1, 0]]], dtype=np.uint8)).tolist()
    [[1, 256]]
    """
    rgb = np.asarray(rgb, dtype=np.int64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a panoptic PNG must be shaped [H, W, 3], got {list(rgb.shape)}")
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_id`: segment ids ``[H, W]`` (0 .. 256**3 - 1) to PNG pixels ``[H, W, 3]`` uint8.

    >>> id_to_rgb(np.array([[1, 256]])).tolist()
    [[[1, 0, 0], [0, 1, 0]]]
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= _PANOPTIC_OFFSET):
        raise ValueError(f"segment ids must lie in 0..{_PANOPTIC_OFFSET - 1}, got {ids.min()}..{ids.max()}")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _panoptic_image_stats(
    gt_map: np.ndarray,
    gt_segments: Sequence[Mapping[str, Any]],
    pred_map: np.ndarray,
    pred_segments: Sequence[Mapping[str, Any]],
    stats: dict[int, list[float]],
) -> None:
    """Add one image's IoU sum, TP, FP and FN per category to ``stats`` (panopticapi's ``pq_compute_single_core``)."""
    if gt_map.shape != pred_map.shape:
        raise ValueError(f"panoptic maps differ in size: ground truth {gt_map.shape}, prediction {pred_map.shape}")
    gt = {int(segment["id"]): segment for segment in gt_segments}
    pred = {int(segment["id"]): segment for segment in pred_segments}
    ids, counts = np.unique(pred_map, return_counts=True)
    pred_area = {int(i): int(c) for i, c in zip(ids, counts) if int(i) != PANOPTIC_VOID}
    if set(pred_area) != set(pred):
        raise ValueError(f"predicted segments in the map {sorted(pred_area)} differ from those listed {sorted(pred)}")
    if not gt_segments:
        gt_area = {}
    else:
        ids, counts = np.unique(gt_map, return_counts=True)
        counted = dict(zip(ids.tolist(), counts.tolist()))
        gt_area = {i: int(segment.get("area", counted.get(i, 0))) for i, segment in gt.items()}
    packed = gt_map.astype(np.uint64) * _PANOPTIC_OFFSET + pred_map.astype(np.uint64)
    labels, counts = np.unique(packed, return_counts=True)
    overlap = {
        (int(label // _PANOPTIC_OFFSET), int(label % _PANOPTIC_OFFSET)): int(c) for label, c in zip(labels, counts)
    }
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), intersection in overlap.items():
        if gt_id not in gt or pred_id not in pred or gt[gt_id].get("iscrowd", 0) == 1:
            continue
        category = int(gt[gt_id]["category_id"])
        if category != int(pred[pred_id]["category_id"]):
            continue
        union = pred_area[pred_id] + gt_area[gt_id] - intersection - overlap.get((PANOPTIC_VOID, pred_id), 0)
        iou = intersection / union
        if iou > 0.5:
            stats.setdefault(category, [0.0, 0, 0, 0])
            stats[category][0] += iou
            stats[category][1] += 1
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)
    crowd_of = {}
    for gt_id, segment in gt.items():
        if gt_id in gt_matched:
            continue
        if segment.get("iscrowd", 0) == 1:
            crowd_of[int(segment["category_id"])] = gt_id
            continue
        stats.setdefault(int(segment["category_id"]), [0.0, 0, 0, 0])[3] += 1
    for pred_id, segment in pred.items():
        if pred_id in pred_matched:
            continue
        category = int(segment["category_id"])
        ignored = overlap.get((PANOPTIC_VOID, pred_id), 0)
        if category in crowd_of:
            ignored += overlap.get((crowd_of[category], pred_id), 0)
        if ignored / pred_area[pred_id] > 0.5:  # mostly on unlabeled pixels or a crowd of its kind
            continue
        stats.setdefault(category, [0.0, 0, 0, 0])[2] += 1


def panoptic_quality(
    images: Iterable[tuple[np.ndarray, Sequence[Mapping[str, Any]], np.ndarray, Sequence[Mapping[str, Any]]]],
    categories: Mapping[int, bool],
) -> dict[str, float]:
    """PQ, SQ and RQ of panoptic predictions by the COCO panoptic definition (Kirillov et al., ``panopticapi``).

    Per category, a predicted and a ground-truth segment match when their IoU is above 0.5 (the IoU leaves out the
    prediction's pixels on ground-truth VOID, id 0); ``SQ`` is the mean IoU of the matches, ``RQ`` is
    ``TP / (TP + FP / 2 + FN / 2)`` and ``PQ = SQ * RQ``. Crowd segments (``iscrowd`` 1) are never false negatives, and
    an unmatched prediction more than half on VOID or on a crowd region of its category is no false positive. The
    averages run over the categories of ``categories`` with at least one TP, FP or FN.

    Args:
        images (Iterable[tuple]): per image ``(gt_map, gt_segments, pred_map, pred_segments)``: the maps are segment
            ids ``np.ndarray[H, W]`` int (see :func:`rgb_to_id`, 0 = VOID), the segments lists of ``{"id",
            "category_id"}`` dicts (ground truth also ``"iscrowd"`` and ``"area"``, optional).
        categories (Mapping[int, bool]): every scored category id, and whether it is a thing (True) or stuff.

    Returns:
        dict with ``"PQ"``, ``"SQ"``, ``"RQ"`` (all categories), the same with ``_things`` and ``_stuff``, and
        ``"categories"``, ``"categories_things"``, ``"categories_stuff"``: how many categories each average is over
        (an average over none is 0).

    >>> gt, pred, segment = np.array([[1, 1, 1, 0]]), np.array([[1, 1, 0, 0]]), {"id": 1, "category_id": 7}
    >>> scores = panoptic_quality([(gt, [segment], pred, [segment])], {7: True})
    >>> round(scores["PQ"], 3), round(scores["SQ"], 3), scores["RQ"]
    (0.667, 0.667, 1.0)
    """
    stats: dict[int, list[float]] = {}
    for gt_map, gt_segments, pred_map, pred_segments in images:
        _panoptic_image_stats(np.asarray(gt_map), gt_segments, np.asarray(pred_map), pred_segments, stats)
    metrics: dict[str, float] = {}
    for suffix, wanted in (("", None), ("_things", True), ("_stuff", False)):
        per_category = []
        for category, isthing in categories.items():
            if wanted is not None and bool(isthing) != wanted:
                continue
            iou, tp, fp, fn = stats.get(int(category), [0.0, 0, 0, 0])
            if tp + fp + fn == 0:
                continue
            denominator = tp + 0.5 * fp + 0.5 * fn
            per_category.append((iou / denominator, iou / tp if tp else 0.0, tp / denominator))
        count = len(per_category)
        for index, name in enumerate(PANOPTIC_METRICS):
            metrics[f"{name}{suffix}"] = sum(row[index] for row in per_category) / count if count else 0.0
        metrics[f"categories{suffix}"] = float(count)
    return metrics


# -- a pipeline on a data set folder -------------------------------------------------------------------------


def evaluate_captioner(
    captioner: Any,
    data_dir: str | Path,
    *,
    max_images: int | None = None,
    meteor: bool = True,
    checks: Sequence[Callable[[dict[str, list[str]], dict[str, str]], dict[str, float]]] = (),
    **call_options: Any,
) -> dict[str, float]:
    """The :func:`caption_metrics` of a :class:`~pipeline.captioning.CaptionPipeline` on a data set folder.

    Args:
        captioner (CaptionPipeline): e.g. ``pipeline.load_captioner("shapes")``.
        data_dir (str | Path): a folder with a caption file and an images folder.
        max_images (int | None, default None): evaluate on the first N images (sorted by name) only.
        meteor (bool, default True): score METEOR too (its Java scorer starts before the captioning, see
            :func:`start_meteor`).
        checks (sequence of callables, default ()): more measures, each called as ``check(references,
            candidates)`` (picture name -> its references, -> its caption) and returning figures to add, e.g.
            ``train.shape_words.shape_accuracy``.
        **call_options: captioner call options, e.g. ``num_beams=3``.

    Returns:
        dict with the :func:`caption_metrics`, ``"images"`` (how many were captioned), ``"seconds_per_image"``
        (the captioning's wall time over them, images read and decoded included) and the ``checks``' figures.
    """
    if meteor:
        start_meteor()
    captions_file, images_dir = find_caption_data(data_dir)
    references = read_captions(captions_file).captions
    names = sorted(references)[:max_images] if max_images else sorted(references)
    tick = time.perf_counter()
    results = captioner([str(images_dir / name) for name in names], **call_options)
    seconds = time.perf_counter() - tick
    candidates = {name: result["caption"] for name, result in zip(names, results)}
    chosen = {name: references[name] for name in names}
    scores = caption_metrics(chosen, candidates, meteor=meteor)
    for check in checks:
        scores.update(check(chosen, candidates))
    return {**scores, "images": float(len(names)), "seconds_per_image": seconds / max(1, len(names))}


#: The columns of :func:`comparison_table`: (heading, metric).
COMPARISON_COLUMNS = (
    *((name, name) for name in CAPTION_METRICS),
    ("gender error", "gender_error_rate"),
    ("gender none", "gender_none_rate"),
    ("s / image", "seconds_per_image"),
)


def comparison_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """Several captioners' :func:`evaluate_captioner` figures as one Markdown table, a row each; a figure a row
    lacks (METEOR left out, no gendered references) shows as "n/a".

    >>> print(comparison_table({"a": {"BLEU-1": 0.5, "seconds_per_image": 0.25}}).splitlines()[2])
    | a | 0.500 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | 0.250 |
    """
    header = "| captioner | " + " | ".join(heading for heading, _ in COMPARISON_COLUMNS) + " |"
    lines = [header, "|---" * (len(COMPARISON_COLUMNS) + 1) + "|"]
    for name, figures in rows.items():
        cells = [f"{figures[key]:.3f}" if key in figures else "n/a" for _, key in COMPARISON_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_segmenter(
    segmenter: Any, data_dir: str | Path, *, max_images: int | None = None, threshold: float = 0.0
) -> dict[str, float]:
    """COCOeval box and mask AP of a :class:`~pipeline.segmentation.SegmentationPipeline` on a data set folder.

    Predicted labels are matched to the ground truth's categories by name.

    Args:
        segmenter (SegmentationPipeline): e.g. ``pipeline.load_segmenter("shapes")``.
        data_dir (str | Path): a folder with ``images/`` and ``instances.json``.
        max_images (int | None, default None): evaluate on the first N images (by id) only.
        threshold (float, default 0.0): the pipeline's score threshold; COCO AP wants every detection.

    Returns:
        dict with ``"bbox_AP"``, ``"bbox_AP50"``, ``"bbox_AP75"``, ``"segm_AP"``, ``"segm_AP50"``,
        ``"segm_AP75"`` and ``"images"``.
    """
    from pycocotools.coco import COCO

    root = Path(data_dir)
    annotations = root / "instances.json"
    if not annotations.is_file() or not (root / "images").is_dir():
        raise ValueError(f"data set folder {str(data_dir)!r} needs images/ and instances.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    category_of = {category["name"]: category["id"] for category in coco.loadCats(coco.getCatIds())}
    unknown = sorted(set(category_of) - set(segmenter.categories))
    if unknown:
        raise ValueError(f"the segmenter cannot predict the data set's categories {unknown}")
    image_ids = sorted(coco.getImgIds())[:max_images] if max_images else sorted(coco.getImgIds())
    paths = [str(root / "images" / coco.imgs[image_id]["file_name"]) for image_id in image_ids]
    detections = []
    for image_id, result in zip(image_ids, segmenter(paths, threshold=threshold, subtask="instance")):
        found = [obj for obj in result["instances"] if obj["label"] in category_of]
        detections += coco_detections(
            image_id,
            np.array([obj["box"] for obj in found], dtype=np.float64).reshape(-1, 4),
            np.array([obj["score"] for obj in found]),
            [category_of[obj["label"]] for obj in found],
            np.stack([np.asarray(obj["mask"]) > 127 for obj in found]) if found else None,
        )
    # Only the images predicted are scored: a cut (max_images) reaches the ground truth too.
    return {**coco_instance_metrics(coco, detections, image_ids=image_ids), "images": float(len(image_ids))}


def shapes_panoptic_truth(data_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, tuple[int, bool]]]:
    """The ground-truth panoptic segmentation of a data set folder with stuff annotations (``train/shapes.py
    --stuff``): each object of ``instances.json`` a thing segment, each stuff class of ``annotations/*.png`` (the
    classes ``labels.json`` lists as stuff, outside the objects) one stuff segment; other pixels are VOID.

    Returns:
        tuple ``(images, categories)``: per image ``{"file", "map", "segments"}`` (segment ids, 0 = VOID;
        ``{"id", "category_id", "area", "iscrowd"}``), and ``{name: (category_id, isthing)}``, stuff ids being
        :data:`pipeline.stuff.STUFF_ID_OFFSET` plus the class index.
    """
    from .stuff import STUFF_ID_OFFSET

    root = Path(data_dir)
    for needed in ("instances.json", "labels.json", "annotations", "images"):
        if not (root / needed).exists():
            raise ValueError(f"data set folder {str(data_dir)!r} needs {needed} (train/shapes.py --stuff writes it)")
    coco = json.loads((root / "instances.json").read_text())
    table = json.loads((root / "labels.json").read_text())
    stuff = {name: STUFF_ID_OFFSET + table["labels"].index(name) for name in table["stuff"]}
    categories = {c["name"]: (int(c["id"]), True) for c in coco["categories"]}
    categories.update({name: (category_id, False) for name, category_id in stuff.items()})
    objects: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        objects.setdefault(annotation["image_id"], []).append(annotation)
    images = []
    for image in sorted(coco["images"], key=lambda image: image["id"]):
        labels = np.asarray(Image.open(root / "annotations" / f"{Path(image['file_name']).stem}.png"), dtype=np.int64)
        segment_map, segments = np.zeros(labels.shape, dtype=np.int32), []
        for annotation in objects.get(image["id"], []):
            pixels = mask_utils.decode(annotation["segmentation"]).astype(bool) & (segment_map == 0)
            segments.append({"id": len(segments) + 1, "category_id": int(annotation["category_id"]), "iscrowd": 0})
            segment_map[pixels] = len(segments)
        for category_id in stuff.values():
            pixels = (labels == category_id - STUFF_ID_OFFSET + 1) & (segment_map == 0)
            if pixels.any():
                segments.append({"id": len(segments) + 1, "category_id": category_id, "iscrowd": 0})
                segment_map[pixels] = len(segments)
        for segment in segments:
            segment["area"] = int(np.count_nonzero(segment_map == segment["id"]))
        images.append({"file": str(root / "images" / image["file_name"]), "map": segment_map, "segments": segments})
    return images, categories


def evaluate_panoptic(
    segmenter: Any, stuff: Any, data_dir: str | Path, *, max_images: int | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """PQ, SQ and RQ (all, things, stuff) of the fused panoptic view, segmenter plus stuff model, on a data set
    folder with stuff annotations (:func:`shapes_panoptic_truth`). Predicted labels match categories by name; a
    predicted segment of another label is left unlabeled.

    Args:
        segmenter (SegmentationPipeline): the things.
        stuff (StuffPipeline | None): the stuff; None scores the segmenter's view alone (stuff then only misses).
        data_dir (str | Path): e.g. a ``train/shapes.py --stuff`` test split.
        max_images (int | None, default None): the first N images only.
        threshold (float, default 0.5): the segmenter's score threshold (the panoptic view's, as served).

    Returns:
        dict: :func:`panoptic_quality`'s figures and ``"images"``.
    """
    from .panoptic import add_stuff

    truth, categories = shapes_panoptic_truth(data_dir)
    truth = truth[:max_images] if max_images else truth
    paths = [image["file"] for image in truth]
    results = segmenter(paths, threshold=threshold, subtask="panoptic")
    if stuff is not None:
        results = [add_stuff(result, regions) for result, regions in zip(results, stuff(paths))]

    def pairs():
        for image, result in zip(truth, results):
            pred_map = np.asarray(result["panoptic"]["map"])
            known = [
                {"id": s["id"], "category_id": categories[s["label"]][0]}
                for s in result["panoptic"]["segments"]
                if s["label"] in categories
            ]
            pred_map = np.where(np.isin(pred_map, [s["id"] for s in known]), pred_map, 0)
            yield image["map"], image["segments"], pred_map, known

    scores = panoptic_quality(pairs(), {category_id: isthing for category_id, isthing in categories.values()})
    return {**scores, "images": float(len(truth))}


# -- visual question answering ---------------------------------------------------------------------------------

#: The official VQA evaluation's number words (``vqaEval.py``'s ``manualMap``) and articles.
_VQA_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_VQA_ARTICLES = frozenset(("a", "an", "the"))
_VQA_PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$~|:']")
_VQA_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def normalize_vqa_answer(answer: str) -> str:
    """An answer as the official VQA evaluation compares it: lower case, punctuation removed (a period only where it
    is not a decimal point), number words as digits, articles dropped, single spaces. (Its contraction table,
    "dont" -> "don't", is not applied: none of this project's answers need it.)

    >>> normalize_vqa_answer("Two."), normalize_vqa_answer(" The Red  one!"), normalize_vqa_answer("2.5")
    ('2', 'red 1', '2.5')
    """
    text = _VQA_PERIOD.sub("", _VQA_PUNCTUATION.sub("", answer.lower().replace("\n", " ").replace("\t", " ")))
    words = [_VQA_NUMBERS.get(word, word) for word in text.split()]
    return " ".join(word for word in words if word not in _VQA_ARTICLES)


def vqa_accuracy(answer: str, human_answers: Sequence[str]) -> float:
    """VQA accuracy of one answer, as the official evaluation: for each of the (ten) human answers left out in turn,
    ``min(1, matches among the others / 3)``, averaged; answers compared after :func:`normalize_vqa_answer`.

    >>> vqa_accuracy("2", ["two"] * 10), round(vqa_accuracy("red", ["red", "red"] + ["blue"] * 8), 3)
    (1.0, 0.6)
    """
    if not human_answers:
        raise ValueError("human_answers must hold at least one answer, got none")
    given = normalize_vqa_answer(answer)
    said = [normalize_vqa_answer(human) for human in human_answers]
    scores = []
    for left_out in range(len(said)):
        matches = sum(other == given for index, other in enumerate(said) if index != left_out)
        scores.append(min(1.0, matches / 3.0))
    return sum(scores) / len(scores)


def read_vqa(data_dir: str | Path, *, images_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """A VQAv2-layout split (``questions.json``, ``annotations.json``, pictures in ``images_dir`` (default
    ``<data_dir>/images``) named by ``image_id`` through ``instances.json`` when present, else VQAv2's COCO file names
    ``COCO_<folder>_<id>.jpg``): one dict per question with ``question``, ``image`` (a path), ``answers`` (the human
    answers), ``answer_type`` and ``question_type``.

    Raises:
        ValueError: a folder without both JSON files.
    """
    import json

    root = Path(data_dir)
    pictures = Path(images_dir) if images_dir else root / "images"
    if not (root / "questions.json").is_file() or not (root / "annotations.json").is_file():
        raise ValueError(f"VQA folder {str(data_dir)!r} needs questions.json and annotations.json")
    asked = json.loads((root / "questions.json").read_text())["questions"]
    answered = {
        entry["question_id"]: entry for entry in json.loads((root / "annotations.json").read_text())["annotations"]
    }
    if (root / "instances.json").is_file():
        files = {
            image["id"]: image["file_name"] for image in json.loads((root / "instances.json").read_text())["images"]
        }
    else:
        files = {entry["image_id"]: f"COCO_{pictures.name}_{entry['image_id']:012d}.jpg" for entry in asked}
    return [
        {
            "question": entry["question"],
            "image": str(pictures / files[entry["image_id"]]),
            "answers": [answer["answer"] for answer in answered[entry["question_id"]]["answers"]],
            "answer_type": answered[entry["question_id"]].get("answer_type", "other"),
            "question_type": answered[entry["question_id"]].get("question_type", ""),
        }
        for entry in asked
    ]


def vqa_scores(answers: Sequence[str], questions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """VQA accuracy overall, by answer type (``accuracy_number``, ``accuracy_yes/no``, ``accuracy_other``) and by
    question type (``accuracy_count``, ...), of answers to :func:`read_vqa`'s questions, in order."""
    if len(answers) != len(questions):
        raise ValueError(f"got {len(answers)} answers for {len(questions)} questions")
    groups: dict[str, list[float]] = {"accuracy": []}
    for answer, question in zip(answers, questions):
        score = vqa_accuracy(answer, question["answers"])
        groups["accuracy"].append(score)
        for key in (question["answer_type"], question["question_type"]):
            if key:
                groups.setdefault(f"accuracy_{key}", []).append(score)
    return {name: sum(scores) / len(scores) for name, scores in groups.items() if scores} | {
        "questions": float(len(questions))
    }


def evaluate_answerer(
    answerer: Any,
    data_dir: str | Path,
    *,
    question_types: Sequence[str] | None = None,
    max_questions: int | None = None,
) -> dict[str, float]:
    """The :func:`vqa_scores` of an :class:`~pipeline.answering.AnswerPipeline` on a VQAv2-layout folder
    (:func:`read_vqa`), the questions of one text answered together as a batch of pictures.

    Args:
        answerer (AnswerPipeline): e.g. ``pipeline.load_answerer("shapes")``.
        data_dir (str | Path): ``questions.json``, ``annotations.json`` and ``images/``.
        question_types (Sequence[str] | None, default None): score only these ``question_type`` values.
        max_questions (int | None, default None): the first N questions (after the type filter) only.

    Returns:
        dict: :func:`vqa_scores`' figures and ``"seconds_per_question"``.
    """
    asked = [entry for entry in read_vqa(data_dir) if not question_types or entry["question_type"] in question_types]
    asked = asked[:max_questions] if max_questions else asked
    by_text: dict[str, list[int]] = {}
    for index, entry in enumerate(asked):
        by_text.setdefault(entry["question"], []).append(index)
    answers = [""] * len(asked)
    tick = time.perf_counter()
    for question, indices in by_text.items():
        results = answerer([asked[index]["image"] for index in indices], question=question)
        for index, result in zip(indices, results):
            answers[index] = result["answer"]
    seconds = time.perf_counter() - tick
    return {**vqa_scores(answers, asked), "seconds_per_question": seconds / max(1, len(asked))}
