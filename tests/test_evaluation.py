"""pipeline.evaluation's panoptic quality: the COCO panoptic definition on a case computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import id_to_rgb, panoptic_quality, rgb_to_id


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
