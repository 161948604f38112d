"""Unit tests of the identity pieces that need no model: numbering, folding, pose, metrics, links."""
import os

import numpy as np
import pytest

from facesets.core.links import place, safe_dst_name
from facesets.identities import shared as ids
from facesets.identities.evaluate import score
from facesets.identities.pose import pose_from_kps, symmetry_from_kps


def test_number_groups_keeps_numbers_by_overlap_and_never_reuses():
    prev = {"faceset_001": ["a", "b", "c"], "faceset_002": ["d", "e"], "faceset_004": ["x"]}
    groups = [["d", "e", "f"], ["g", "h"], ["a", "b"], ["c", "i", "j", "k"]]
    named, nxt = ids.number_groups(groups, prev, "faceset", next_number=5)
    assert named["faceset_001"] == ["a", "b"]          # biggest overlap with 001 wins it
    assert named["faceset_002"] == ["d", "e", "f"]
    assert named["faceset_005"] == ["c", "i", "j", "k"]  # new: numbered after the highest ever, largest first
    assert named["faceset_006"] == ["g", "h"]
    assert "faceset_004" not in named and nxt == 7


def test_number_groups_fresh_run_is_by_size():
    named, nxt = ids.number_groups([["a"], ["b", "c", "d"], ["e", "f"]], {}, "person", 1)
    assert list(named.values()) == [["b", "c", "d"], ["e", "f"], ["a"]]
    assert nxt == 4


def test_fold_in_respects_threshold():
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(16, 3)))[0].T  # 3 orthonormal directions
    emb = np.concatenate([centres[0] + 0.05 * rng.normal(size=(5, 16)), centres[1] + 0.05 * rng.normal(size=(5, 16)),
                          centres[2][None, :]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    groups = {"p1": [0, 1, 2, 3], "p2": [5, 6, 7, 8]}
    added, left = ids.fold_in(emb, groups, [4, 9, 10], threshold=0.3)
    assert added == {"p1": [4], "p2": [9]} and left == [10]


def test_pose_from_kps():
    frontal = np.array([[[30, 40], [70, 40], [50, 62], [35, 80], [65, 80]]], np.float32)
    pitch, yaw, roll = pose_from_kps(frontal)[0]
    assert abs(yaw) < 1 and abs(roll) < 1 and abs(pitch) < 10
    turned = frontal.copy()
    turned[0, 2, 0] = 64  # nose shifted toward the right eye: the head is turned
    assert pose_from_kps(turned)[0][1] > 30
    theta = np.radians(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    tilted = (frontal[0] - 50) @ rot.T + 50
    p2 = pose_from_kps(tilted[None])[0]
    assert abs(p2[2] - 20) < 0.5 and abs(p2[1]) < 2  # roll measured, yaw unaffected
    assert symmetry_from_kps(frontal)[0] > 0.99 and symmetry_from_kps(turned)[0] < 0.8


def test_score_known_values():
    perfect = score(["a", "a", "b", "b"], ["x", "x", "y", "y"])
    assert perfect["bcubed_f"] == pytest.approx(1.0) and perfect["pairwise_f"] == pytest.approx(1.0)
    assert perfect["nmi"] == pytest.approx(1.0)
    merged = score(["a", "a", "a", "a"], ["x", "x", "y", "y"])
    assert merged["bcubed_precision"] == pytest.approx(0.5) and merged["bcubed_recall"] == pytest.approx(1.0)
    assert merged["pairwise_precision"] == pytest.approx(2 / 6) and merged["clusters_merged"] == 1
    split = score(["a", "b", "c", "c"], ["x", "x", "y", "y"])
    assert split["identities_split"] == 1 and split["bcubed_precision"] == pytest.approx(1.0)
    assert split["bcubed_recall"] == pytest.approx(0.75)


def test_safe_dst_name_is_flat_stable_and_bounded(tmp_path):
    a = safe_dst_name("/mnt/x/src/a b/IMG_1.jpg")
    assert a == "mnt__x__src__a b__IMG_1.jpg" and "/" not in a
    long = safe_dst_name("/" + "/".join(["d" * 60] * 8) + "/photo.jpg")
    assert len(os.fsencode(long)) <= 220 and long.endswith("photo.jpg")
    assert long != safe_dst_name("/" + "/".join(["e" * 60] * 8) + "/photo.jpg")


def test_place_falls_back_and_never_overwrites(tmp_path):
    src = tmp_path / "src.jpg"
    src.write_bytes(b"x")
    assert place(src, tmp_path / "out/a.jpg", "hardlink") == "hardlink"
    assert os.stat(tmp_path / "out/a.jpg").st_ino == os.stat(src).st_ino
    assert place(src, tmp_path / "out/a.jpg", "hardlink") == "exists"
    assert place(src, tmp_path / "out/b.jpg", "symlink") == "symlink" and (tmp_path / "out/b.jpg").is_symlink()
    assert place(src, tmp_path / "out/c.jpg", "copy") == "copy"
