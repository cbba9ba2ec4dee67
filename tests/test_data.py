"""archiver.data.ArchiveDataset: every image exactly once through DataLoader workers, as read() gives it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import archiver
from archiver.cli import app
from archiver.data import ArchiveDataset
from conftest import write_images


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Nine small RGB images of three sizes (so batches mix coded shapes), packed briefly."""
    base = tmp_path_factory.mktemp("data")
    src = write_images(base / "src", 3, 40, 32, seed=1)
    for i, (w, h) in enumerate([(48, 48)] * 3 + [(33, 21)] * 3):
        write_images(base / f"more{i}", 1, w, h, seed=10 + i)
        (base / f"more{i}" / "0.png").rename(src / f"m{i}.png")
    out = base / "a.nca"
    args = ["pack", str(src), "-o", str(out), "--max-steps", "30", "--refine", "0", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with archiver.open(out) as arc:
        expected = {name: arc.read(name) for name in arc.image_names()}
    return out, expected


@pytest.mark.parametrize("batch_size", [None, 4])
def test_dataloader_two_workers_gets_every_image_once(archive, batch_size):
    path, expected = archive
    dataset = ArchiveDataset(path, transform=torch.from_numpy, return_name=True)
    assert len(dataset) == len(expected) and dataset.names == list(expected)
    dataset[0]  # a handle opened in the parent before the fork must not be reused by the workers
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=2, shuffle=True,
                        collate_fn=None if batch_size is None else list)  # fmt: skip
    seen: list[str] = []
    for item in loader:
        for name, tensor in item if batch_size else [item]:
            assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8
            np.testing.assert_array_equal(tensor.numpy(), expected[name], err_msg=name)
            seen.append(name)
    assert sorted(seen) == sorted(expected)  # each once
    dataset.close()


def test_batched_fetch_keeps_index_order_and_repeats(archive):
    path, expected = archive
    dataset = ArchiveDataset(path, names=list(expected)[::-1])
    items = dataset.__getitems__([2, 0, 2, 5])
    for item, i in zip(items, [2, 0, 2, 5]):
        np.testing.assert_array_equal(item, expected[dataset.names[i]])
    restored = pickle.loads(pickle.dumps(dataset))  # spawned workers get a copy without the handle
    assert restored._archive is None and restored.names == dataset.names
    np.testing.assert_array_equal(restored[1], expected[dataset.names[1]])
