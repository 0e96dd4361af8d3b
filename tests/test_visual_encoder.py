from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.encoders.visual import (
    DescriptorParams,
    VisualEncoder,
    create_visual_encoder,
    crop_to_content,
    mirror_permutation,
)
from mmsearch.errors import EncoderError


@pytest.fixture(scope="module")
def encoder() -> VisualEncoder:
    return VisualEncoder()


def _drawing(
    size: int = 96,
    background: tuple[int, ...] = (255, 255, 255),
    mode: str = "RGB",
) -> Image.Image:
    """A small picture with shapes of several colours and orientations."""
    image = Image.new(mode, (size, size), background)
    draw = ImageDraw.Draw(image)
    scale = size / 96
    opaque = (lambda rgb: (*rgb, 255)) if mode == "RGBA" else (lambda rgb: rgb)
    draw.ellipse([10 * scale, 10 * scale, 60 * scale, 60 * scale], fill=opaque((230, 180, 20)))
    draw.rectangle([50 * scale, 45 * scale, 88 * scale, 85 * scale], fill=opaque((30, 90, 200)))
    draw.line([5 * scale, 90 * scale, 90 * scale, 5 * scale], fill=opaque((20, 20, 20)), width=3)
    return image


def _stripes(horizontal: bool, colour: tuple[int, int, int]) -> Image.Image:
    pixels = np.full((80, 80, 3), 255, dtype=np.uint8)
    band = (np.arange(80) // 8) % 2 == 0
    if horizontal:
        pixels[band, :, :] = colour
    else:
        pixels[:, band, :] = colour
    return Image.fromarray(pixels)


def _noise(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_satisfies_the_encoder_protocol(encoder: VisualEncoder) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.name == "visual"
    assert encoder.modalities == frozenset({"image"})
    assert encoder.version.startswith("visual-v1:")
    assert len(encoder.version) == len("visual-v1:") + 12
    assert encoder.dim == DescriptorParams().dim


def test_shape_dtype_and_unit_norm(encoder: VisualEncoder) -> None:
    images = [_drawing(), _stripes(True, (200, 0, 0)), _noise(1), Image.new("L", (10, 30), 90)]
    vectors = encoder.encode_images(images)
    assert vectors.shape == (4, encoder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


def test_empty_batch(encoder: VisualEncoder) -> None:
    vectors = encoder.encode_images([])
    assert vectors.shape == (0, encoder.dim)
    assert vectors.dtype == np.float32


def test_deterministic_and_independent_of_batch(encoder: VisualEncoder) -> None:
    images = [_drawing(), _noise(2), _stripes(False, (0, 150, 0))]
    first = encoder.encode_images(images)
    again = VisualEncoder().encode_images(images)
    alone = encoder.encode_images([images[1]])
    assert np.array_equal(first, again)
    np.testing.assert_allclose(alone[0], first[1], atol=1e-6)


def test_version_changes_with_parameters() -> None:
    changed = VisualEncoder(dataclasses.replace(DescriptorParams(), colour_weight=0.9))
    assert changed.version != VisualEncoder().version


def test_each_image_is_most_similar_to_itself(encoder: VisualEncoder) -> None:
    images = [
        _drawing(),
        _stripes(True, (200, 0, 0)),
        _stripes(False, (200, 0, 0)),
        _stripes(True, (0, 0, 200)),
        _noise(3),
        Image.new("RGB", (40, 40), (40, 160, 60)),
        _drawing(background=(20, 20, 20)),
    ]
    vectors = encoder.encode_images(images)
    similarity = vectors @ vectors.T
    assert (similarity.argmax(axis=1) == np.arange(len(images))).all()
    off_diagonal = similarity[~np.eye(len(images), dtype=bool)]
    assert off_diagonal.max() < 0.99


def test_red_is_closer_to_another_red_than_to_blue(encoder: VisualEncoder) -> None:
    red, other_red, blue = encoder.encode_images(
        [
            Image.new("RGB", (32, 32), (220, 30, 30)),
            Image.new("RGB", (32, 32), (200, 45, 40)),
            Image.new("RGB", (32, 32), (30, 60, 220)),
        ]
    )
    assert _cosine(red, other_red) > _cosine(red, blue)
    assert _cosine(red, other_red) > 0.9


def test_resized_copy_is_closer_than_a_different_image(encoder: VisualEncoder) -> None:
    original = _drawing(size=120)
    smaller = original.resize((70, 70), Image.Resampling.BILINEAR)
    other = _stripes(True, (30, 90, 200))
    vectors = encoder.encode_images([original, smaller, other])
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])
    assert _cosine(vectors[0], vectors[1]) > 0.95


def test_transparent_background_matches_white_background(encoder: VisualEncoder) -> None:
    on_transparent = _drawing(background=(0, 0, 0, 0), mode="RGBA")
    on_white = _drawing(background=(255, 255, 255))
    on_black = _drawing(background=(0, 0, 0))
    vectors = encoder.encode_images([on_transparent, on_white, on_black])
    assert _cosine(vectors[0], vectors[1]) > 0.9
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2])


def test_fully_transparent_image_gives_a_finite_vector(encoder: VisualEncoder) -> None:
    vectors = encoder.encode_images([Image.new("RGBA", (16, 16), (0, 0, 0, 0))])
    assert np.isfinite(vectors).all()


def test_other_modes_are_accepted(encoder: VisualEncoder) -> None:
    images = [Image.new(mode, (20, 20)) for mode in ("L", "1", "P", "LA", "CMYK", "I;16")]
    vectors = encoder.encode_images(images)
    assert vectors.shape == (len(images), encoder.dim)


def test_batch_results_match_single_image_results(encoder: VisualEncoder) -> None:
    images = [_noise(seed) for seed in range(8)]
    batched = encoder.encode_images(images)
    single = np.concatenate([encoder.encode_images([image]) for image in images])
    assert np.allclose(batched, single, atol=1e-6)


def test_encode_texts_is_unsupported(encoder: VisualEncoder) -> None:
    with pytest.raises(EncoderError, match="visual"):
        encoder.encode_texts(["a red mug"])


def test_factory_rejects_an_argument() -> None:
    with pytest.raises(EncoderError, match="no argument"):
        create_visual_encoder("large")


def test_create_encoder_builds_the_visual_encoder() -> None:
    encoder = create_encoder("visual")
    assert isinstance(encoder, VisualEncoder)
    assert encoder.encode_images([_drawing()]).shape == (1, encoder.dim)


def test_a_framed_or_placed_copy_describes_like_the_picture(encoder: VisualEncoder) -> None:
    """Cropped to content first: a black frame, or the picture small on a white canvas,
    leaves the vector (nearly) as it was; a photo-like image is not cropped at all."""
    picture = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((4, 10, 40, 60), fill=(220, 30, 30, 255))
    draw.rectangle((36, 4, 60, 30), fill=(30, 60, 220, 255))
    flat = Image.new("RGB", (64, 64), "white")
    flat.paste(picture, mask=picture)
    framed = Image.new("RGB", (76, 76), "black")
    framed.paste(flat, (6, 6))
    placed = Image.new("RGB", (64, 64), "white")
    placed.paste(flat.resize((38, 38)), (3, 24))
    other = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(other).ellipse((4, 4, 60, 60), fill=(30, 200, 60))
    vectors = encoder.encode_images([flat, framed, placed, other])
    # Without the crop: 0.83 for the frame, 0.50 for the placed copy.
    assert _cosine(vectors[0], vectors[1]) > 0.99
    assert _cosine(vectors[0], vectors[2]) > 0.9
    assert _cosine(vectors[0], vectors[3]) < 0.5
    photo = _noise(3)
    assert crop_to_content(photo) is photo


def _circle(colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).ellipse(box, fill=colour)
    return image


def test_a_red_circle_finds_the_red_circle_before_the_orange_one(encoder: VisualEncoder) -> None:
    """Colour faithfulness: red and orange are one hue bin apart (30°), and the texture
    and layout of two circles are nearly the same, so the colour block must decide."""
    names = ["red", "orange", "blue", "yellow"]
    colours = [(220, 20, 30), (255, 140, 0), (30, 60, 220), (250, 220, 20)]
    gallery = encoder.encode_images([_circle(c, (8, 8, 56, 56)) for c in colours])
    # Another red, another size and place: a query drawn separately.
    for query_colour, box in [((255, 0, 0), (2, 2, 40, 40)), ((170, 10, 20), (20, 10, 50, 40))]:
        query = encoder.encode_images([_circle(query_colour, box)])[0]
        similarity = gallery @ query
        ranked = [names[i] for i in np.argsort(-similarity)]
        assert ranked[0] == "red", (
            query_colour,
            dict(zip(names, similarity.tolist(), strict=True)),
        )
        assert similarity[0] - similarity[1] > 0.03


def test_the_mirror_permutation_gives_the_mirrored_images_descriptor(
    encoder: VisualEncoder,
) -> None:
    permutation = mirror_permutation(encoder.params)
    assert sorted(permutation.tolist()) == list(range(encoder.dim))
    drawing = _drawing()
    vector, mirrored = encoder.encode_images(
        [drawing, drawing.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    )
    assert float(vector @ mirrored) < 0.95  # the descriptor tells left from right ...
    assert float(vector[permutation] @ mirrored) > 0.999  # ... and the permutation undoes it
