"""pipeline.evaluation's caption scores: BLEU, METEOR (Java), ROUGE-L, CIDEr, and the gender misclassification rates.

The gender rates are checked on hand-written references and captions (the shapes data has no people) whose rates
are counted by hand in the comments.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.evaluation import (
    CAPTION_METRICS,
    FEMALE_WORDS,
    MALE_WORDS,
    caption_gender,
    caption_metrics,
    gender_rates,
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


def test_caption_gender_words():
    assert caption_gender("Two MEN, playing frisbee.") == "male" and caption_gender("she smiles") == "female"
    assert caption_gender("a woman's hat") == "female" and caption_gender("the women's team") == "female"
    assert caption_gender("a human near a manhole") is None and caption_gender("a boy and a girl") is None
    assert {"man", "men", "boy", "he", "his", "gentleman"} <= MALE_WORDS
    assert {"woman", "women", "girl", "she", "her", "lady"} <= FEMALE_WORDS and not MALE_WORDS & FEMALE_WORDS


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


def test_meteor_without_java_says_to_install_one(tmp_path):
    # A PATH with no java on it (python itself is run by its full path): METEOR fails with the advice, the rest works.
    script = (
        "from pipeline.evaluation import caption_metrics\n"
        "refs, caps = {'1': ['a red circle']}, {'1': 'a red circle'}\n"
        "print(sorted(caption_metrics(refs, caps, meteor=False)))\n"
        "caption_metrics(refs, caps)\n"
    )
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "'ROUGE-L'" in done.stdout and "'METEOR'" not in done.stdout
    assert "MeteorUnavailableError: METEOR needs a Java runtime" in done.stderr
    assert "apt-get install default-jre-headless" in done.stderr and "meteor=False" in done.stderr
