"""pipeline.evaluation: caption scores (BLEU, METEOR with Java, ROUGE-L, CIDEr), the gender misclassification rates,
and the panoptic quality by the COCO panoptic definition on a case computed by hand.

The gender rates are checked on hand-written references and captions (the shapes data has no people) whose rates
are counted by hand in the comments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import (
    CAPTION_METRICS,
    FEMALE_WORDS,
    MALE_WORDS,
    caption_gender,
    caption_metrics,
    gender_rates,
    id_to_rgb,
    normalize_caption,
    panoptic_quality,
    ptb_tokenize,
    rgb_to_id,
)

ROOT = Path(__file__).resolve().parents[1]
SHAPES_REFERENCES = {
    "1.png": ["a red circle to the left of a blue square", "a red circle and a blue square"],
    "2.png": ["a green triangle", "a picture of a green triangle"],
    "3.png": ["a yellow square", "one shape a yellow square"],
}

#: Nine images: seven whose references agree on a gender, two that do not count.
PEOPLE_REFERENCES = {
    "bike.jpg": ["a man riding a bike", "a person on a bicycle"],  # male
    "umbrella.jpg": ["a woman holding an umbrella", "a lady with an umbrella"],  # female
    "ball.jpg": ["a boy kicking a ball", "a child playing soccer"],  # male
    "dog.jpg": ["a girl walking her dog", "a child and a dog"],  # female
    "table.jpg": ["a man and a woman at a table", "two people eating"],  # both named: not counted
    "grass.jpg": ["a dog on the grass", "a brown dog lying down"],  # nobody: not counted
    "market.jpg": ["two women talking at a market", "women shopping"],  # female
    "suit.jpg": ["a gentleman in a suit", "a person in a suit and tie"],  # male
    "wave.jpg": ["he is surfing a big wave", "a surfer on a wave"],  # male, by a pronoun
}
PEOPLE_CAPTIONS = {
    "bike.jpg": "a man's bike on a street",  # right (a possessive counts)
    "umbrella.jpg": "a man holding an umbrella",  # wrong
    "ball.jpg": "a child near a manhole cover",  # none ("manhole" is not "man")
    "dog.jpg": "a girl with her dog",  # right
    "table.jpg": "a woman at a table",  # not counted
    "grass.jpg": "a man on the grass",  # not counted
    "market.jpg": "a man and a woman talking",  # none: both genders named, undecided
    "suit.jpg": "a woman in a suit",  # wrong
    "wave.jpg": "a woman surfing a wave",  # wrong
}


def test_gender_rates_counted_by_hand():
    rates = gender_rates(PEOPLE_REFERENCES, PEOPLE_CAPTIONS)
    # counted: bike, umbrella, ball, dog, market, suit, wave = 7; wrong: umbrella, suit, wave = 3; none: ball, market
    assert rates == {"gender_images": 7.0, "gender_error_rate": pytest.approx(3 / 7), "gender_none_rate": 2 / 7}
    right = {key: PEOPLE_REFERENCES[key][0] for key in PEOPLE_REFERENCES}  # each image's own first reference
    assert gender_rates(PEOPLE_REFERENCES, right)["gender_error_rate"] == 0.0
    assert gender_rates(SHAPES_REFERENCES, {key: "a man" for key in SHAPES_REFERENCES}) == {"gender_images": 0.0}


#: Captions with what a regular expression gets wrong and the PTB tokenizer does not: hyphens, possessives,
#: accents, decimals, punctuation inside and around words.
TRICKY_REFERENCES = {
    "shirt.jpg": ["A man's red T-shirt on a chair.", "a red t-shirt, folded", "A T-shirt on a wooden chair"],
    "cafe.jpg": ["Two people in a café near the Seine.", "people at a cafe's table", "a café with 2 people"],
    "scale.jpg": ["A 2.5 kg weight on a scale!", "a scale that reads 2.5 kilograms", "a weight (2.5 kg) on scales"],
    "dog.jpg": ["A dog's toy -- a ball -- on the grass...", "a dog's ball on grass", "a well-kept lawn and a ball"],
}
TRICKY_CANDIDATES = {
    "shirt.jpg": "a man's t-shirt on a chair",
    "cafe.jpg": "two people sitting in a café",
    "scale.jpg": "a 2.5 kg weight on a scale",
    "dog.jpg": "a dog's ball on a well-kept lawn",
}


def test_caption_scores_equal_pycocoevalcaps_own_pipeline(meteor):
    """caption_metrics against pycocoevalcap run directly as COCO's evaluation runs it (PTBTokenizer on the
    references and on the candidates, then each scorer), on captions a regular expression tokenises differently."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from pipeline.evaluation import _meteor_scorer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({key: [{"caption": text} for text in texts] for key, texts in TRICKY_REFERENCES.items()})
    res = tokenizer.tokenize({key: [{"caption": text}] for key, text in TRICKY_CANDIDATES.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    theirs = {f"BLEU-{n}": score for n, score in enumerate(bleu, start=1)}
    theirs["METEOR"], _ = _meteor_scorer().compute_score(gts, res)  # pycocoevalcap's Meteor, one JVM per process
    theirs["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    theirs["CIDEr"], _ = Cider().compute_score(gts, res)

    ours = caption_metrics(TRICKY_REFERENCES, TRICKY_CANDIDATES)
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-6), name
    # The case matters: a regular expression splits "t-shirt" and "2.5", keeps "man's" whole and drops accents.
    keys = sorted(TRICKY_CANDIDATES)
    ptb = ptb_tokenize([TRICKY_CANDIDATES[key] for key in keys])
    assert ptb == [res[key][0] for key in keys]
    assert ptb != [normalize_caption(TRICKY_CANDIDATES[key]) for key in keys]
    assert "t-shirt" in ptb[keys.index("shirt.jpg")] and "2.5" in ptb[keys.index("scale.jpg")]


def test_caption_gender_words():
    assert caption_gender("Two MEN, playing frisbee.") == "male" and caption_gender("she smiles") == "female"
    assert caption_gender("a woman's hat") == "female" and caption_gender("the women's team") == "female"
    assert caption_gender("a human near a manhole") is None and caption_gender("a boy and a girl") is None
    assert {"man", "men", "boy", "he", "his", "gentleman"} <= MALE_WORDS
    assert {"woman", "women", "girl", "she", "her", "lady"} <= FEMALE_WORDS and not MALE_WORDS & FEMALE_WORDS
    # Every word of Burns et al.'s lists ("Women also Snowboard", their code), less one proper name.
    burns_male = "boy brother dad husband man groom male guy men males boys guys dads dude policeman policemen "
    burns_male += "father son fireman actor gentleman boyfriend mans his actors"
    burns_female = "girl sister mom wife woman bride female lady women girls ladies females moms actress nun "
    burns_female += "girlfriend her she"
    assert set(burns_male.split()) <= MALE_WORDS and set(burns_female.split()) <= FEMALE_WORDS
    assert caption_gender("a policeman on a horse") == "male" and caption_gender("an actress on stage") == "female"


def test_caption_metrics_score_references(meteor):
    perfect = caption_metrics(SHAPES_REFERENCES, {key: refs[0] for key, refs in SHAPES_REFERENCES.items()})
    assert set(perfect) == {*CAPTION_METRICS, "gender_images"}
    for name in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L"):
        assert perfect[name] == pytest.approx(1.0, abs=1e-6), name
    wrong = caption_metrics(SHAPES_REFERENCES, {"1.png": "a blue square", "2.png": "a red circle", "3.png": "a"})
    assert wrong["BLEU-4"] < 0.1 and wrong["CIDEr"] < perfect["CIDEr"] and wrong["METEOR"] < 0.5
    with pytest.raises(ValueError, match="same images"):
        caption_metrics(SHAPES_REFERENCES, {"1.png": "a red circle"})


def test_rouge_l_by_hand_and_meteor_left_out():
    # ROUGE-L, one image: the longest common subsequence of "a red circle" and the first reference is 3 words,
    # precision 3/3, recall 3/10; F with beta 1.2: (1 + 1.44) * 1 * 0.3 / (0.3 + 1.44 * 1) = 0.42069.
    one = {"1.png": ["a red circle to the left of a blue square"]}
    scores = caption_metrics(one, {"1.png": "a red circle"}, meteor=False)
    assert "METEOR" not in scores
    assert scores["ROUGE-L"] == pytest.approx(2.44 * 0.3 / 1.74)


def test_caption_scores_without_java_say_to_install_one(tmp_path):
    # A PATH with no java on it (python itself is run by its full path): the tokenizer, as METEOR, needs Java.
    script = (
        "from pipeline.evaluation import caption_metrics\n"
        "caption_metrics({'1': ['a red circle']}, {'1': 'a red circle'}, meteor=False)\n"
    )
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "JavaUnavailableError: caption scores need a Java runtime" in done.stderr
    assert "apt-get install default-jre-headless" in done.stderr and "PTB tokenizer" in done.stderr


# -- panoptic quality ------------------------------------------------------------------------------------------------


def _row(*runs: tuple[int, int]) -> np.ndarray:
    """A one-row map from (segment id, length) runs."""
    return np.concatenate([np.full(length, segment_id) for segment_id, length in runs])[None, :]


def test_panoptic_quality_hand_computed():
    # Ground truth, 20 pixels: person 1 (6 px), person 2 (4 px), a crowd of cars (4 px), sky (4 px), 2 px VOID.
    gt = _row((1, 6), (2, 4), (3, 4), (4, 4), (0, 2))
    gt_segments = [
        {"id": 1, "category_id": 1, "iscrowd": 0},
        {"id": 2, "category_id": 1, "iscrowd": 0},
        {"id": 3, "category_id": 2, "iscrowd": 1},
        {"id": 4, "category_id": 3, "iscrowd": 0},
    ]
    # Prediction: 11 = person on pixels 0-4 and 18 (VOID); 12 = person on 5-7; 8-9 unlabeled; 13 = car on 10-12
    # (inside the crowd); 14 = sky on 13-17; 15 = car on 19 (VOID).
    pred = gt.copy()
    pred[0, 0:5], pred[0, 18] = 11, 11
    pred[0, 5:8], pred[0, 8:10] = 12, 0
    pred[0, 10:13], pred[0, 13:18], pred[0, 19] = 13, 14, 15
    pred_segments = [
        {"id": 11, "category_id": 1},
        {"id": 12, "category_id": 1},
        {"id": 13, "category_id": 2},
        {"id": 14, "category_id": 3},
        {"id": 15, "category_id": 2},
    ]
    # By hand:
    # - 11 vs person 1: intersection 5, union 6 + 6 - 5 - 1 (its pixel on VOID) = 6, IoU 5/6 > 0.5: a TP.
    # - 12 vs person 2: intersection 2, union 3 + 4 - 2 = 5, IoU 0.4: no match; 12 is a FP, person 2 a FN.
    # - 13 lies on the crowd of its category: no FP; the crowd is never a FN. 15 lies on VOID: no FP.
    # - 14 vs sky: intersection 4, union 5 + 4 - 4 = 5, IoU 0.8: a TP.
    # person: SQ 5/6, RQ 1 / (1 + 0.5 + 0.5) = 0.5, PQ 5/12; car: nothing counted; sky: SQ 0.8, RQ 1, PQ 0.8.
    scores = panoptic_quality([(gt, gt_segments, pred, pred_segments)], {1: True, 2: True, 3: False})
    assert scores["categories"] == 2 and scores["categories_things"] == 1 and scores["categories_stuff"] == 1
    assert scores["PQ"] == pytest.approx((5 / 12 + 0.8) / 2)
    assert scores["SQ"] == pytest.approx((5 / 6 + 0.8) / 2)
    assert scores["RQ"] == pytest.approx((0.5 + 1.0) / 2)
    assert (scores["PQ_things"], scores["SQ_things"], scores["RQ_things"]) == pytest.approx((5 / 12, 5 / 6, 0.5))
    assert (scores["PQ_stuff"], scores["SQ_stuff"], scores["RQ_stuff"]) == pytest.approx((0.8, 0.8, 1.0))


def test_panoptic_quality_sums_over_images_before_averaging():
    segment = [{"id": 1, "category_id": 5}]
    perfect = (_row((1, 4)), segment, _row((1, 4)), segment)
    missed = (_row((1, 4)), segment, _row((0, 4)), [])
    scores = panoptic_quality([perfect, missed], {5: True})
    # one TP (IoU 1) and one FN over both images: RQ 1 / 1.5, SQ 1
    assert scores["RQ"] == pytest.approx(2 / 3) and scores["SQ"] == 1.0 and scores["PQ"] == pytest.approx(2 / 3)


def test_panoptic_quality_checks_its_inputs():
    segment = [{"id": 1, "category_id": 5}]
    with pytest.raises(ValueError, match="differ from those listed"):
        panoptic_quality([(_row((1, 4)), segment, _row((2, 4)), segment)], {5: True})
    with pytest.raises(ValueError, match="differ in size"):
        panoptic_quality([(_row((1, 4)), segment, _row((1, 3)), segment)], {5: True})


def test_panoptic_png_ids_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 16777215, 7]])
    assert (rgb_to_id(id_to_rgb(ids)) == ids).all()
    with pytest.raises(ValueError, match="segment ids must lie"):
        id_to_rgb(np.array([[-1]]))
