import os

import pytest

from archiver.collection.scan import check_output_outside, scan_tree
from archiver.container.format import EntryKind
from archiver.errors import InputError


def test_scan_sorted_with_dirs_and_links(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "empty").mkdir()
    os.symlink("a.txt", tmp_path / "link")
    items = scan_tree(tmp_path)
    assert [(i.rel, i.kind) for i in items] == [
        (b"a.txt", EntryKind.FILE), (b"b", EntryKind.DIRECTORY), (b"b/x.txt", EntryKind.FILE),
        (b"empty", EntryKind.DIRECTORY), (b"link", EntryKind.SYMLINK),
    ]  # fmt: skip


def test_no_files(tmp_path):
    (tmp_path / "only_dirs").mkdir()
    with pytest.raises(InputError, match="contains no files"):
        scan_tree(tmp_path)


def test_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        scan_tree(tmp_path / "f")
    with pytest.raises(InputError, match="no such folder"):
        scan_tree(tmp_path / "missing")


def test_output_inside_input(tmp_path):
    with pytest.raises(InputError, match="is inside the input folder"):
        check_output_outside(tmp_path, tmp_path / "sub" / "a.nca")
    check_output_outside(tmp_path / "in", tmp_path / "a.nca")
