import cv2
import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.vision.detect import DetectorError, HaarFaceDetector, crop_face


@pytest.fixture(scope="module")
def astronaut_grey() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


def test_haar_finds_the_astronaut_face(astronaut_grey):
    boxes = HaarFaceDetector(DetectorConfig(analysis_width=512, min_size=30)).detect(astronaut_grey)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # The face in the 512x512 photo is around x 170-270, y 60-180 (checked by eye once).
    assert 150 < x + w / 2 < 280 and 60 < y + h / 2 < 170 and 60 < w < 160


def test_detection_on_a_downscaled_analysis_frame_maps_back(astronaut_grey):
    big = cv2.resize(astronaut_grey, (1024, 1024))
    full = HaarFaceDetector(DetectorConfig(analysis_width=1024, min_size=60)).detect(big)[0]
    small = HaarFaceDetector(DetectorConfig(analysis_width=256, min_size=15)).detect(big)[0]
    assert abs(full[0] - small[0]) < 40 and abs(full[2] - small[2]) < 60


def test_no_face_in_a_flat_image():
    assert HaarFaceDetector(DetectorConfig()).detect(np.full((480, 640), 128, np.uint8)) == []


def test_missing_cascade_is_a_clear_error():
    with pytest.raises(DetectorError, match="not found"):
        HaarFaceDetector(DetectorConfig(cascade="nope.xml"))


def test_crop_geometry_and_border_padding():
    grey = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = crop_face(grey, (10, 20, 40, 40), 40)
    assert np.array_equal(crop, grey[20:60, 10:50])  # same size: an exact copy
    edge = crop_face(grey, (-10, -10, 30, 30), 48)  # partly outside: replicated border, no exception
    assert edge.shape == (48, 48)
    wide = crop_face(grey, (10, 10, 40, 20), 48, scale=1.0)  # non-square boxes become squares
    assert wide.shape == (48, 48)
