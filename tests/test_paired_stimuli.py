"""The paired image-caption loader (resonance.stimuli.paired_stimuli) on tiny fake inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from resonance import data, stimuli


def _stamp(folder, name, caption_lines, colour=(200, 30, 30), png=True, size=(40, 24)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join(caption_lines) + "\n", encoding="utf-8")
    if png:
        image = Image.new("RGBA", size, (0, 0, 0, 0))
        image.paste((*colour, 255), (5, 5, size[0] - 5, size[1] - 5))
        image.save(folder / f"{name}.png")


@pytest.fixture
def stamps(tmp_path):
    root = tmp_path / "stamps"
    _stamp(root / "animals" / "birds", "owl", ["An owl.", "fr.utf8=Un hibou."], (10, 10, 200))
    _stamp(root / "animals" / "birds", "owl_b", ["an OWL"], (10, 200, 10))  # same caption
    _stamp(root / "food", "apple", ["An apple."], (200, 10, 10))
    _stamp(root / "food", "pear", ["A pear."], (200, 10, 10))  # same pixels as the apple
    _stamp(root / "food", "ghost", ["No image."], png=False)
    _stamp(root / "food", "foreign", ["de.utf8=Ein Apfel."], (1, 2, 3))  # no English line
    _stamp(root / "vehicles", "bus", ["A bus."], (250, 200, 0), size=(30, 60))
    return root


def test_stamps_pairs_captions_categories_and_dedup(stamps):
    s = stimuli.paired_stimuli(("tuxpaint",), size=32, stamps_dir=stamps, cache=False)
    assert s.texts == ["An owl.", "An apple.", "A bus."]
    assert s.labels == ["tuxpaint/animals/birds", "tuxpaint/food", "tuxpaint/vehicles"]
    assert s.images.shape == (3, 32, 32, 3) and s.images.dtype == np.uint8
    # transparent margins are cropped and the stamp sits on white, padded square
    assert (s.images[2, :, 0] == 255).all() and (s.images[2, 16, 16] == (250, 200, 0)).all()
    assert stimuli.category_name(s.labels[0]) == "animals birds"
    assert stimuli.coarse_category(s.labels[0]) == "tuxpaint/animals"


def test_cached_and_deterministic(stamps):
    first = stimuli.paired_stimuli(("tuxpaint",), size=32, stamps_dir=stamps)
    again = stimuli.paired_stimuli(("tuxpaint",), size=32, stamps_dir=stamps)
    fresh = stimuli.paired_stimuli(("tuxpaint",), size=32, stamps_dir=stamps, cache=False)
    assert first.key == again.key == fresh.key
    # a changed input folder is a different cache entry
    _stamp(stamps / "food", "plum", ["A plum."], (90, 0, 90))
    assert len(stimuli.paired_stimuli(("tuxpaint",), size=32, stamps_dir=stamps)) == 4


def test_subset_is_seeded(stamps):
    a = stimuli.paired_stimuli(("tuxpaint",), size=32, n=2, seed=1, stamps_dir=stamps)
    b = stimuli.paired_stimuli(("tuxpaint",), size=32, n=2, seed=1, stamps_dir=stamps)
    assert a.texts == b.texts and len(a) == 2
    with pytest.raises(ValueError, match="n must be an integer in"):
        stimuli.paired_stimuli(("tuxpaint",), size=32, n=9, stamps_dir=stamps)


def test_missing_corpus_names_the_packages(tmp_path):
    with pytest.raises(data.MissingCorpusError, match="tuxpaint-stamps-default"):
        stimuli.paired_stimuli(("tuxpaint",), stamps_dir=tmp_path / "nowhere")
    with pytest.raises(data.MissingCorpusError, match="fonts-noto-color-emoji unicode-data"):
        stimuli.paired_stimuli(("emoji",), emoji_font=tmp_path / "no.ttf",
                               emoji_test=tmp_path / "no.txt")
    with pytest.raises(ValueError, match="sources must be distinct names"):
        stimuli.paired_stimuli(("photos",))


EMOJI_TEST = """\
# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
1F603                                                  ; fully-qualified     # 😃 E0.6 grinning face with big eyes
# subgroup: face-negative
2639 FE0F                                              ; fully-qualified     # ☹️ E0.7 frowning face
2639                                                   ; unqualified         # ☹ E0.7 frowning face
# group: Component
1F3FB                                                  ; fully-qualified     # 🏻 E1.0 light skin tone
# group: Animals & Nature
# subgroup: animal-amphibian
1F438                                                  ; fully-qualified     # 🐸 E0.6 frog
1F468 200D 1F4BB                                       ; fully-qualified     # 👨‍💻 E4.0 man technologist
"""


@pytest.mark.skipif(not stimuli.EMOJI_FONT.is_file(), reason="fonts-noto-color-emoji not installed")
def test_emoji_rendered_with_cldr_names(tmp_path):
    test_file = tmp_path / "emoji-test.txt"
    test_file.write_text(EMOJI_TEST, encoding="utf-8")
    s = stimuli.paired_stimuli(("emoji",), size=48, emoji_test=test_file, cache=False)
    assert s.texts == ["grinning face", "grinning face with big eyes", "frowning face", "frog"]
    assert s.labels[0] == "emoji/Smileys & Emotion/face-smiling"
    assert s.labels[-1] == "emoji/Animals & Nature/animal-amphibian"
    assert stimuli.category_name(s.labels[-1]) == "animal amphibian"
    assert s.images.shape == (4, 48, 48, 3)
    frog = s.images[3].astype(int)
    assert frog[0, 0].tolist() == [255, 255, 255]  # white ground
    assert (frog.max(-1) - frog.min(-1)).max() > 30  # rendered in colour, not grey
